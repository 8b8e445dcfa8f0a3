"""ACLs: digest and world ids, permissions, versions of ACLs, the super user."""

import pytest
from kazoo.exceptions import AuthFailedError, BadVersionError, InvalidACLError, NoAuthError
from kazoo.protocol.states import KazooState
from kazoo.security import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

from conftest import SUPER_AUTH, wait_until


def test_digest_acl_needs_auth(make_client, root):
    owner = make_client()
    stranger = make_client()
    path = f"{root}/secret"
    owner.add_auth("digest", "user:pw")
    owner.create(path, b"s3cret", acl=[make_digest_acl("user", "pw", all=True)])

    with pytest.raises(NoAuthError):
        stranger.get(path)
    with pytest.raises(NoAuthError):
        stranger.set(path, b"x")
    with pytest.raises(NoAuthError):
        stranger.get_children(path)
    with pytest.raises(NoAuthError):
        stranger.create(f"{path}/child")
    with pytest.raises(NoAuthError):
        stranger.set_acls(path, OPEN_ACL_UNSAFE)
    # exists: ZooKeeper 3.8.0-3.8.3 do not guard it by ACLs; 3.8.4+ and 3.9.2+ need READ
    # (ZOOKEEPER-2590, an information leak), as zkraft does. Either is ZooKeeper's.
    try:
        assert stranger.exists(path).dataLength == 6
    except NoAuthError:
        pass

    stranger.add_auth("digest", "user:wrong")  # accepted, but it is another identity
    with pytest.raises(NoAuthError):
        stranger.get(path)
    stranger.add_auth("digest", "user:pw")
    assert stranger.get(path)[0] == b"s3cret"
    stranger.set(path, b"changed")
    assert owner.get(path)[0] == b"changed"


def test_digest_identity_is_base64_sha1(zk, root):
    acl = make_digest_acl("alice", "secret", read=True, admin=True)
    assert acl.id.id == make_digest_acl_credential("alice", "secret")
    zk.create(f"{root}/n", acl=[acl])
    zk.add_auth("digest", "alice:secret")
    acls, stat = zk.get_acls(f"{root}/n")
    assert acls == [acl]
    assert acls[0].perms == Permissions.READ | Permissions.ADMIN
    assert acls[0].id == Id("digest", make_digest_acl_credential("alice", "secret"))


def test_get_acls_masks_digests_without_admin(make_client, root):
    # ZooKeeper 3.8: a reader without ADMIN permission on the node gets each digest id with
    # its hash replaced by "x".
    owner = make_client()
    owner.create(f"{root}/n", acl=[make_digest_acl("alice", "secret", read=True)])
    owner.add_auth("digest", "alice:secret")
    acls, _ = owner.get_acls(f"{root}/n")
    assert acls == [ACL(Permissions.READ, Id("digest", "alice:x"))]
    admin = make_client()
    admin.add_auth("digest", "alice:secret")
    admin.create(f"{root}/m", acl=[make_digest_acl("alice", "secret", read=True, admin=True)])
    acls, _ = admin.get_acls(f"{root}/m")
    assert acls[0].id.id == make_digest_acl_credential("alice", "secret")


def test_get_acls_needs_read_or_admin(make_client, root):
    owner = make_client()
    stranger = make_client()
    owner.create(f"{root}/n", acl=[make_digest_acl("u", "p", all=True)])
    with pytest.raises(NoAuthError):
        stranger.get_acls(f"{root}/n")


def test_get_set_acls_with_version(zk, root):
    path = f"{root}/n"
    zk.create(path, b"d")
    acls, stat = zk.get_acls(path)
    assert acls == list(OPEN_ACL_UNSAFE)
    assert stat.aversion == 0
    new = [make_acl("world", "anyone", read=True, write=True, admin=True),
           make_digest_acl("a", "b", all=True)]
    with pytest.raises(BadVersionError):
        zk.set_acls(path, new, version=3)
    stat = zk.set_acls(path, new, version=0)
    assert stat.aversion == 1
    assert stat.version == 0  # data version untouched
    acls, stat = zk.get_acls(path)
    assert sorted((a.id.scheme, a.perms) for a in acls) == [
        ("digest", Permissions.ALL),
        ("world", Permissions.READ | Permissions.WRITE | Permissions.ADMIN),
    ]
    assert stat.aversion == 1
    with pytest.raises(BadVersionError):
        zk.set_acls(path, OPEN_ACL_UNSAFE, version=0)


def test_world_read_only(zk, root):
    path = f"{root}/ro"
    zk.create(path, b"r", acl=READ_ACL_UNSAFE)
    assert zk.get(path)[0] == b"r"
    assert zk.get_children(path) == []
    with pytest.raises(NoAuthError):
        zk.set(path, b"w")
    with pytest.raises(NoAuthError):
        zk.set(path, b"w", version=7)  # the ACL is checked before the version
    with pytest.raises(NoAuthError):
        zk.create(f"{path}/child")
    with pytest.raises(NoAuthError):
        zk.set_acls(path, OPEN_ACL_UNSAFE)
    # Deleting needs DELETE on the parent, not on the node.
    zk.delete(path)
    assert zk.exists(path) is None


def test_create_and_delete_permissions(zk, root):
    parent = f"{root}/p"
    zk.create(parent, acl=[make_acl("world", "anyone", read=True, create=True, admin=True)])
    zk.create(f"{parent}/c")  # CREATE allowed
    with pytest.raises(NoAuthError):
        zk.delete(f"{parent}/c")  # DELETE not
    zk.set_acls(parent, [make_acl("world", "anyone", read=True, delete=True, admin=True)])
    with pytest.raises(NoAuthError):
        zk.create(f"{parent}/d")
    zk.delete(f"{parent}/c")


@pytest.mark.parametrize(
    "acl",
    [
        ACL(Permissions.ALL, Id("nosuchscheme", "x")),
        ACL(Permissions.ALL, Id("auth", "")),  # no credentials added on this session
        ACL(Permissions.ALL, Id("ip", "not-an-ip")),
        ACL(Permissions.ALL, Id("digest", "no-colon")),
    ],
    ids=["unknown-scheme", "auth-without-credentials", "bad-ip", "bad-digest-id"],
)
def test_invalid_acl_refused(zk, root, acl):
    with pytest.raises(InvalidACLError):
        zk.create(f"{root}/n", acl=[acl])
    assert zk.exists(f"{root}/n") is None
    zk.create(f"{root}/m")
    with pytest.raises(InvalidACLError):
        zk.set_acls(f"{root}/m", [acl])


def test_auth_scheme_uses_session_credentials(make_client, root):
    owner = make_client()
    owner.add_auth("digest", "bob:pw")
    owner.create(f"{root}/n", b"x", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    acls, _ = owner.get_acls(f"{root}/n")
    assert acls == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("bob", "pw")))]
    other = make_client()
    with pytest.raises(NoAuthError):
        other.get(f"{root}/n")
    other.add_auth("digest", "bob:pw")
    assert other.get(f"{root}/n")[0] == b"x"


def test_auth_survives_reconnect_to_other_member(make_client, ensemble, root):
    # Credentials belong to the session's connection: kazoo re-sends them on reconnect, so a
    # client re-created on another member with add_auth works the same way there.
    owner = make_client(hosts=ensemble.hostport(ensemble.members[0]["id"]))
    owner.add_auth("digest", "carol:pw")
    owner.create(f"{root}/n", b"x", acl=[make_digest_acl("carol", "pw", all=True)])
    for m in ensemble.members[1:]:
        c = make_client(hosts=ensemble.hostport(m["id"]))
        with pytest.raises(NoAuthError):
            c.get(f"{root}/n")
        c.add_auth("digest", "carol:pw")
        assert c.get(f"{root}/n")[0] == b"x"


def test_super_user_reads_and_writes_everything(make_client, root):
    if not SUPER_AUTH:
        pytest.skip("no ZK_SUPER_AUTH")
    owner = make_client()
    owner.create(f"{root}/locked", b"mine", acl=[make_digest_acl("u", "p", all=True)])
    owner.create(f"{root}/nothing", b"none", acl=[make_digest_acl("u", "p", read=True)])
    admin = make_client()
    admin.add_auth("digest", SUPER_AUTH)
    assert admin.get(f"{root}/locked")[0] == b"mine"
    admin.set(f"{root}/nothing", b"super")
    assert admin.get_acls(f"{root}/locked")[0][0].id.scheme == "digest"
    admin.set_acls(f"{root}/locked", OPEN_ACL_UNSAFE)
    assert make_client().get(f"{root}/locked")[0] == b"mine"

    wrong = make_client()
    wrong.add_auth("digest", SUPER_AUTH.split(":")[0] + ":not-the-password")
    with pytest.raises(NoAuthError):
        wrong.get(f"{root}/nothing")


def test_unknown_auth_scheme_fails_the_session(zk):
    # ZooKeeper answers an auth packet of an unknown scheme with AUTH_FAILED and closes the
    # connection: kazoo raises AuthFailedError and the client is LOST.
    states = []
    zk.add_listener(states.append)
    with pytest.raises(AuthFailedError):
        zk.add_auth("nosuchscheme", "whatever")
    wait_until(lambda: KazooState.LOST in states, timeout=10, what="LOST after AUTH_FAILED")
