"""Create / read / update / delete, versions, stat fields and error codes."""

import re
import time

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    ConnectionLoss,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)

from conftest import wait_until


def test_create_get_set_delete_with_versions(zk, root):
    path = f"{root}/node"
    assert zk.create(path, b"one") == path
    data, stat = zk.get(path)
    assert data == b"one"
    assert stat.version == 0

    stat = zk.set(path, b"two", version=0)
    assert stat.version == 1
    assert zk.get(path)[0] == b"two"

    with pytest.raises(BadVersionError):
        zk.set(path, b"three", version=0)
    assert zk.get(path)[0] == b"two"

    stat = zk.set(path, b"three")  # -1: any version
    assert stat.version == 2

    with pytest.raises(BadVersionError):
        zk.delete(path, version=1)
    assert zk.exists(path) is not None
    zk.delete(path, version=2)
    assert zk.exists(path) is None


def test_errors_on_missing_and_existing(zk, root):
    missing = f"{root}/missing"
    with pytest.raises(NoNodeError):
        zk.get(missing)
    with pytest.raises(NoNodeError):
        zk.set(missing, b"x")
    with pytest.raises(NoNodeError):
        zk.delete(missing)
    with pytest.raises(NoNodeError):
        zk.get_children(missing)
    with pytest.raises(NoNodeError):
        zk.create(f"{missing}/child")  # parent missing
    assert zk.exists(missing) is None

    zk.create(f"{root}/there", b"1")
    with pytest.raises(NodeExistsError):
        zk.create(f"{root}/there", b"2")
    assert zk.get(f"{root}/there")[0] == b"1"


def test_not_empty_and_recursive_delete(zk, root):
    zk.create(f"{root}/p")
    zk.create(f"{root}/p/c")
    with pytest.raises(NotEmptyError):
        zk.delete(f"{root}/p")
    zk.create(f"{root}/p/c/d")
    zk.delete(f"{root}/p", recursive=True)
    assert zk.exists(f"{root}/p") is None


def test_stat_fields(zk, root):
    path = f"{root}/s"
    before_ms = int(time.time() * 1000)
    _, stat = zk.create(path, b"12345", include_data=True)
    assert stat.version == 0
    assert stat.cversion == 0
    assert stat.aversion == 0
    assert stat.numChildren == 0
    assert stat.dataLength == 5
    assert stat.ephemeralOwner == 0
    assert stat.czxid == stat.mzxid == stat.pzxid
    assert stat.czxid > 0
    assert stat.ctime == stat.mtime
    # ctime is the server's wall clock in ms; same machine, so within a minute of ours.
    assert abs(stat.ctime - before_ms) < 60_000

    _, got = zk.get(path)
    assert got == stat

    stat2 = zk.set(path, b"ab")
    assert stat2.version == 1
    assert stat2.dataLength == 2
    assert stat2.czxid == stat.czxid
    assert stat2.mzxid > stat.mzxid
    assert stat2.mtime >= stat2.ctime
    assert stat2.pzxid == stat.pzxid  # pzxid moves with children only

    _, child = zk.create(f"{path}/c1", include_data=True)
    parent = zk.exists(path)
    assert parent.numChildren == 1
    assert parent.cversion == 1
    assert parent.version == 1  # a child does not change the parent's data version
    assert parent.pzxid == child.czxid
    assert parent.mzxid == stat2.mzxid

    zk.create(f"{path}/c2")
    zk.delete(f"{path}/c1")
    parent2 = zk.exists(path)
    assert parent2.numChildren == 1
    assert parent2.cversion == 3  # +1 per child created or deleted
    assert parent2.pzxid > parent.pzxid

    # zxids are ordered across nodes: a later write has a larger zxid.
    _, later = zk.create(f"{root}/later", include_data=True)
    assert later.czxid > parent2.pzxid


def test_empty_and_binary_data(zk, root):
    zk.create(f"{root}/empty")
    data, stat = zk.get(f"{root}/empty")
    assert data == b""
    assert stat.dataLength == 0
    blob = bytes(range(256)) * 4
    zk.create(f"{root}/bin", blob)
    assert zk.get(f"{root}/bin")[0] == blob
    zk.set(f"{root}/bin", b"")
    assert zk.get(f"{root}/bin") [0] == b""


def test_null_data_reads_back_null(zk, root):
    # None goes on the wire as a null buffer (length -1): ZooKeeper keeps it apart from
    # empty data and answers it null.
    zk.create(f"{root}/null", None)
    data, stat = zk.get(f"{root}/null")
    assert data is None
    assert stat.dataLength == 0
    zk.create(f"{root}/empty", b"")
    assert zk.get(f"{root}/empty")[0] == b""
    zk.set(f"{root}/empty", None)
    assert zk.get(f"{root}/empty")[0] is None
    zk.set(f"{root}/null", b"")
    assert zk.get(f"{root}/null")[0] == b""


def test_makepath_and_ensure_path(zk, root):
    deep = f"{root}/a/b/c/d"
    assert zk.create(deep, b"leaf", makepath=True) == deep
    assert zk.get(deep)[0] == b"leaf"
    for p in (f"{root}/a", f"{root}/a/b", f"{root}/a/b/c"):
        assert zk.exists(p) is not None
    assert zk.ensure_path(f"{root}/x/y/z")
    assert zk.exists(f"{root}/x/y/z") is not None
    assert zk.ensure_path(f"{root}/x/y/z")  # already there: no error


def test_get_children_and_include_data(zk, root):
    names = ["b", "a", "c"]
    for n in names:
        zk.create(f"{root}/{n}", n.encode())
    assert sorted(zk.get_children(root)) == sorted(names)
    children, stat = zk.get_children(root, include_data=True)
    assert sorted(children) == sorted(names)
    assert stat.numChildren == 3
    assert stat.cversion == 3
    assert zk.get_children(f"{root}/a") == []


def test_exists_returns_none_and_stat(zk, root):
    assert zk.exists(f"{root}/nope") is None
    zk.create(f"{root}/yes", b"abc")
    stat = zk.exists(f"{root}/yes")
    assert stat is not None and stat.dataLength == 3


def test_ephemeral_node(make_client, root):
    owner = make_client()
    other = make_client()
    path = f"{root}/eph"
    owner.create(path, b"e", ephemeral=True)
    stat = other.exists(path)
    assert stat.ephemeralOwner == owner.client_id[0]
    assert stat.ephemeralOwner != 0
    with pytest.raises(NoChildrenForEphemeralsError):
        owner.create(f"{path}/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        other.create(f"{path}/child")
    # An explicit close ends the session: the ephemeral is gone right away.
    owner.stop()
    owner.close()
    wait_until(lambda: other.exists(path) is None, timeout=10, what="ephemeral removed on close")


def test_ephemeral_can_be_deleted_by_anyone(make_client, root):
    owner = make_client()
    other = make_client()
    owner.create(f"{root}/e", ephemeral=True)
    other.delete(f"{root}/e")
    assert owner.exists(f"{root}/e") is None


SEQ = re.compile(r"^(.*?)(\d{10})$")


def test_sequential_persistent(zk, root):
    parent = f"{root}/seq"
    zk.create(parent)
    paths = [zk.create(f"{parent}/n-", sequence=True) for _ in range(5)]
    seqs = []
    for p in paths:
        m = SEQ.match(p)
        assert m, p
        assert m.group(1) == f"{parent}/n-"
        seqs.append(int(m.group(2)))
    # The counter is the parent's: a fresh parent starts at 0 and counts up.
    assert seqs == [0, 1, 2, 3, 4]
    # Another prefix shares the same counter.
    other = zk.create(f"{parent}/m-", sequence=True)
    assert other == f"{parent}/m-0000000005"
    # A bare trailing slash gives a name of ten digits only.
    bare = zk.create(f"{parent}/", sequence=True)
    assert bare == f"{parent}/0000000006"
    assert sorted(zk.get_children(parent)) == sorted(
        [p.rsplit("/", 1)[1] for p in paths] + ["m-0000000005", "0000000006"]
    )


def test_sequence_increases_across_deletes(zk, root):
    # Documented: a counter unique to the parent that only increases. Deleting children
    # (sequential or not) never makes a number come back. (ZooKeeper 3.8 counts the child
    # creations, not the deletions: a-0, plain, a-2 -- not asserted, undocumented.)
    parent = f"{root}/seq"
    zk.create(parent)
    first = zk.create(f"{parent}/a-", sequence=True)
    assert first == f"{parent}/a-0000000000"
    zk.create(f"{parent}/plain")
    zk.delete(f"{parent}/plain")
    second = zk.create(f"{parent}/a-", sequence=True)
    zk.delete(first)
    zk.delete(second)
    third = zk.create(f"{parent}/a-", sequence=True)
    nums = [int(SEQ.match(p).group(2)) for p in (first, second, third)]
    assert nums[0] < nums[1] < nums[2], nums


def test_sequential_ephemeral(make_client, root):
    a = make_client()
    b = make_client()
    pa = a.create(f"{root}/e-", ephemeral=True, sequence=True)
    pb = b.create(f"{root}/e-", ephemeral=True, sequence=True)
    assert SEQ.match(pa) and SEQ.match(pb)
    assert int(SEQ.match(pb).group(2)) > int(SEQ.match(pa).group(2))
    assert a.exists(pb).ephemeralOwner == b.client_id[0]
    b.stop()
    b.close()
    wait_until(lambda: a.exists(pb) is None, timeout=10, what="sequential ephemeral removed")
    assert a.exists(pa) is not None


def test_sync_then_read_sees_write_of_other_client(make_client, ensemble, root):
    # Writer on one member, reader on another: after sync the reader sees the write.
    m1, m2 = ensemble.members[0]["id"], ensemble.members[1]["id"]
    writer = make_client(hosts=ensemble.hostport(m1))
    reader = make_client(hosts=ensemble.hostport(m2))
    for i in range(20):
        writer.create(f"{root}/n{i}", str(i).encode())
        reader.sync(root)
        assert reader.get(f"{root}/n{i}")[0] == str(i).encode()


def test_delete_root_and_reserved_is_bad_arguments(zk):
    with pytest.raises(BadArgumentsError):
        zk.delete("/")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper")
    with pytest.raises(NodeExistsError):
        zk.create("/")
    data, stat = zk.get("/")
    assert "zookeeper" in zk.get_children("/")
    assert stat.numChildren >= 1


@pytest.mark.parametrize("bad", ["/bad\x01name", "/bad\x7fname", "/bad\x00name"])
def test_invalid_path_is_bad_arguments(zk, root, bad):
    with pytest.raises(BadArgumentsError):
        zk.create(root + bad)


def test_data_just_under_one_mib_is_accepted(zk, root):
    blob = b"x" * 1_000_000
    zk.create(f"{root}/big", blob)
    data, stat = zk.get(f"{root}/big")
    assert stat.dataLength == len(blob)
    assert data == blob


def test_data_over_one_mib_drops_the_connection_but_not_the_session(zk, root):
    # ZooKeeper refuses a packet over jute.maxbuffer (1 MiB - 1) by closing the connection:
    # the client sees ConnectionLoss, reconnects with the same session, nothing was written.
    zk.create(f"{root}/big", b"small")
    session = zk.client_id[0]
    with pytest.raises(ConnectionLoss):
        zk.set(f"{root}/big", b"x" * (1024 * 1024))
    wait_until(lambda: zk.connected, timeout=20, what="reconnect")
    assert zk.client_id[0] == session
    assert zk.get(f"{root}/big")[0] == b"small"
    with pytest.raises(ConnectionLoss):
        zk.create(f"{root}/big2", b"x" * (1024 * 1024 + 1))
    wait_until(lambda: zk.connected, timeout=20, what="reconnect")
    assert zk.exists(f"{root}/big2") is None
    assert zk.client_id[0] == session
