"""What kazoo 2.11 cannot ask for: TTL znodes, container znodes, persistent watches.

These use zkwire.RawClient (ZooKeeper's wire format over a plain socket) for the requests and
kazoo for everything else. ZooKeeper needs `zookeeper.extendedTypesEnabled=true` for TTL nodes;
its containers and TTL nodes are reaped by a periodic check (run.py sets it to 1 s).
"""

import time

import pytest

import zkwire as w
from conftest import wait_until

REAP_TIMEOUT = 30.0  # seconds a server may take to remove an expired TTL node / empty container


@pytest.fixture
def raw(ensemble, root):
    m = ensemble.members[0]
    client = w.RawClient(m["host"], m["port"])
    client.sync(root)
    yield client
    client.close()


@pytest.fixture
def zk(make_client, ensemble):
    """Here kazoo talks to the member the raw client talks to: a watch set through one sees
    every write made through the other in order, with no sync between them."""
    return make_client(hosts=ensemble.hostport(ensemble.members[0]["id"]))


def test_raw_client_sees_kazoo_writes(raw, zk, root):
    zk.create(f"{root}/n", b"hello")
    data, stat = raw.get(f"{root}/n")
    assert data == b"hello" and stat["version"] == 0
    assert raw.exists(f"{root}/missing") is None


def test_ttl_node_expires_when_untouched(raw, zk, root):
    path, stat = raw.create(f"{root}/ttl", b"t", w.PERSISTENT_WITH_TTL, ttl=500)
    assert path == f"{root}/ttl"
    assert stat["version"] == 0
    data, _ = zk.get(path)
    assert data == b"t"
    wait_until(lambda: zk.exists(path) is None, timeout=REAP_TIMEOUT, interval=0.2, what="TTL node removed")


def test_ttl_node_with_children_is_kept(raw, zk, root):
    path, _ = raw.create(f"{root}/ttlp", b"", w.PERSISTENT_WITH_TTL, ttl=200)
    zk.create(f"{path}/child")
    time.sleep(3.0)  # well past the TTL and several reaper rounds
    assert zk.exists(path) is not None
    zk.delete(f"{path}/child")
    wait_until(lambda: zk.exists(path) is None, timeout=REAP_TIMEOUT, interval=0.2, what="TTL node removed")


def test_ttl_sequential(raw, zk, root):
    path, _ = raw.create(f"{root}/s-", b"", w.PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=60_000)
    assert path == f"{root}/s-0000000000"
    assert zk.exists(path) is not None


@pytest.mark.parametrize("ttl", [0, -1, 1 << 62])
def test_ttl_out_of_range_is_bad_arguments(raw, root, ttl):
    with pytest.raises(w.ZkError) as err:
        raw.create(f"{root}/bad", b"", w.PERSISTENT_WITH_TTL, ttl=ttl)
    assert err.value.code == w.BAD_ARGUMENTS
    assert raw.exists(f"{root}/bad") is None


def test_ttl_mode_through_plain_create_is_bad_arguments(raw, root):
    body = w._string(f"{root}/bad") + w._buffer(b"") + w._acls(w.OPEN_ACL_UNSAFE) + w._int(w.PERSISTENT_WITH_TTL)
    err, _, _ = raw.call(w.CREATE2, body)
    assert err == w.BAD_ARGUMENTS
    assert raw.exists(f"{root}/bad") is None


def test_container_removed_after_last_child(raw, zk, root):
    path, stat = raw.create(f"{root}/c", b"cdata", w.CONTAINER)
    assert path == f"{root}/c" and stat["ephemeralOwner"] == 0
    assert zk.get(path)[0] == b"cdata"
    zk.create(f"{path}/a")
    zk.create(f"{path}/b", ephemeral=True)
    time.sleep(2.0)
    assert zk.exists(path).numChildren == 2
    zk.delete(f"{path}/a")
    time.sleep(2.0)
    assert zk.exists(path) is not None  # one child left
    zk.delete(f"{path}/b")
    wait_until(lambda: zk.exists(path) is None, timeout=REAP_TIMEOUT, interval=0.2, what="container removed")


def test_fresh_empty_container_is_kept(raw, zk, root):
    # A container becomes a candidate for deletion once its last child is deleted; one that
    # never had a child stays (a recipe has time to create its first child).
    path, _ = raw.create(f"{root}/empty", b"", w.CONTAINER)
    time.sleep(3.0)
    assert zk.exists(path) is not None


def _kinds(events):
    return [(e.type, e.path) for e in events]


def test_persistent_watch(raw, zk, root):
    p = f"{root}/p"
    zk.create(p)
    raw.add_watch(p, w.MODE_PERSISTENT)
    zk.set(p, b"1")
    zk.set(p, b"2")  # fires again: not one-shot
    zk.create(f"{p}/c")
    zk.set(f"{p}/c", b"x")  # a child's data: not watched
    zk.create(f"{p}/c/d")  # a grandchild: not watched
    zk.delete(f"{p}/c/d")
    zk.delete(f"{p}/c")
    zk.delete(p)
    zk.create(p)  # the watch outlives the deletion of its znode
    got = raw.drain_events(quiet=1.0)
    assert _kinds(got) == [
        (w.NODE_DATA_CHANGED, p),
        (w.NODE_DATA_CHANGED, p),
        (w.NODE_CHILDREN_CHANGED, p),
        (w.NODE_CHILDREN_CHANGED, p),
        (w.NODE_DELETED, p),
        (w.NODE_CREATED, p),
    ]


def test_persistent_recursive_watch(raw, zk, root):
    r = f"{root}/r"
    raw.add_watch(r, w.MODE_PERSISTENT_RECURSIVE)  # on a path that does not exist yet
    zk.create(r)
    zk.create(f"{r}/a")
    zk.create(f"{r}/a/b")
    zk.set(f"{r}/a/b", b"1")
    zk.set(r, b"1")
    zk.delete(f"{r}/a/b")
    zk.create(f"{root}/rx")  # shares the prefix "r", is not under r/
    zk.create(f"{root}/r2")
    got = raw.drain_events(quiet=1.0)
    # No NodeChildrenChanged events in recursive mode.
    assert _kinds(got) == [
        (w.NODE_CREATED, r),
        (w.NODE_CREATED, f"{r}/a"),
        (w.NODE_CREATED, f"{r}/a/b"),
        (w.NODE_DATA_CHANGED, f"{r}/a/b"),
        (w.NODE_DATA_CHANGED, r),
        (w.NODE_DELETED, f"{r}/a/b"),
    ]


def test_persistent_watch_from_transaction_and_ephemeral_expiry(raw, zk, make_client, root):
    r = f"{root}/tx"
    writer = zk
    writer.create(r)
    raw.add_watch(r, w.MODE_PERSISTENT_RECURSIVE)
    t = writer.transaction()
    t.create(f"{r}/x")
    t.set_data(r, b"v")
    t.commit()
    owner = make_client()
    owner.create(f"{r}/eph", ephemeral=True)
    owner.stop()
    owner.close()
    got = raw.drain_events(quiet=1.0)
    assert _kinds(got) == [
        (w.NODE_CREATED, f"{r}/x"),
        (w.NODE_DATA_CHANGED, r),
        (w.NODE_CREATED, f"{r}/eph"),
        (w.NODE_DELETED, f"{r}/eph"),
    ]


def test_set_watches_after_moving_to_another_member(ensemble, make_client, zk, root):
    # A session's connection drops; while it is away its watched znodes change; it reconnects
    # to another member with the same session and re-registers its watches (setWatches with
    # the last zxid it saw). The server fires at once the watches whose znodes changed since.
    a, b = ensemble.members[0], ensemble.members[1]
    data, missing, parent, gone, quiet, rec = (
        f"{root}/{n}" for n in ("data", "missing", "parent", "gone", "quiet", "rec")
    )
    for p in (data, parent, gone, quiet, rec):
        zk.create(p)
    raw = w.RawClient(a["host"], a["port"], timeout_ms=20000)
    try:
        sid = raw.session_id
        raw.get(data, watch=True)
        assert raw.exists(missing, watch=True) is None
        raw.get_children(parent, watch=True)
        raw.exists(gone, watch=True)
        raw.get(quiet, watch=True)
        raw.add_watch(rec, w.MODE_PERSISTENT_RECURSIVE)
        raw.drop()

        zk.set(data, b"changed")
        zk.create(missing)
        zk.create(f"{parent}/child")
        zk.delete(gone)
        zk.create(f"{rec}/while-away")
        make_client(hosts=ensemble.hostport(b["id"])).sync(root)  # b has applied all that

        raw.reconnect(b["host"], b["port"], data=[data, gone, quiet], exist=[missing], child=[parent],
                      recursive=[rec])
        assert raw.session_id == sid
        got = raw.drain_events(quiet=1.5)
        kinds = _kinds(got)
        for want in [
            (w.NODE_DATA_CHANGED, data),
            (w.NODE_CREATED, missing),
            (w.NODE_CHILDREN_CHANGED, parent),
            (w.NODE_DELETED, gone),
        ]:
            assert kinds.count(want) == 1, (want, kinds)
        assert not [k for k in kinds if k[1] == quiet], kinds
        # ZooKeeper re-registers a persistent watch without replaying what it missed.
        assert not [k for k in kinds if k[1].startswith(rec)], kinds

        zk.set(quiet, b"now")
        zk.create(f"{rec}/after")
        got = raw.drain_events(quiet=1.5)
        assert _kinds(got) == [(w.NODE_DATA_CHANGED, quiet), (w.NODE_CREATED, f"{rec}/after")]
    finally:
        raw.close()


def test_reconnect_with_wrong_password_is_refused(ensemble):
    a, b = ensemble.members[0], ensemble.members[1]
    raw = w.RawClient(a["host"], a["port"])
    try:
        raw.drop()
        good = raw.password
        raw.password = bytes(x ^ 0xFF for x in good)
        with pytest.raises(w.ZkError):
            raw.reconnect(b["host"], b["port"])
        raw.password = good
        raw.reconnect(b["host"], b["port"])
        assert raw.exists("/") is not None
    finally:
        raw.close()


CHECK_WATCHES = 17
REMOVE_WATCHES = 18
MULTI_READ = 22
GET_EPHEMERALS = 103
GET_ALL_CHILDREN_NUMBER = 104
NO_WATCHER = -121
WATCHER_DATA = 2
WATCHER_CHILDREN = 1


def test_check_and_remove_watches(raw, zk, root):
    p = f"{root}/wat"
    zk.create(p, b"")
    raw.get(p, watch=True)
    raw.get_children(p, watch=True)
    check = lambda kind: raw.call(CHECK_WATCHES, w._string(p) + w._int(kind))[0]
    remove = lambda kind: raw.call(REMOVE_WATCHES, w._string(p) + w._int(kind))[0]
    assert check(WATCHER_DATA) == w.OK
    assert check(WATCHER_DATA) == w.OK, "checking removes nothing"
    assert remove(WATCHER_DATA) == w.OK
    assert check(WATCHER_DATA) == NO_WATCHER
    assert remove(WATCHER_DATA) == NO_WATCHER
    assert check(WATCHER_CHILDREN) == w.OK, "the child watch stays"
    zk.set(p, b"1")  # the removed data watch does not fire; the child watch does
    zk.create(f"{p}/c")
    assert _kinds(raw.drain_events(quiet=1.0)) == [(w.NODE_CHILDREN_CHANGED, p)]


def test_get_ephemerals_and_all_children_number(raw, zk, root):
    base = f"{root}/eph"
    zk.create(base)
    raw.create(f"{base}/a", b"", w.EPHEMERAL)
    raw.create(f"{base}/b", b"", w.EPHEMERAL)
    zk.create(f"{base}/mine-not", b"", ephemeral=True)  # another session's
    r = raw.call(GET_EPHEMERALS, w._string(base))
    assert r[0] == w.OK
    n = r[2].int()
    assert sorted(r[2].string() for _ in range(n)) == [f"{base}/a", f"{base}/b"]
    zk.create(f"{root}/tree/x/y", makepath=True)
    err, _, body = raw.call(GET_ALL_CHILDREN_NUMBER, w._string(f"{root}/tree"))
    assert err == w.OK and body.int() == 2
    err, _, _ = raw.call(GET_ALL_CHILDREN_NUMBER, w._string(f"{root}/missing"))
    assert err == w.NO_NODE


def test_multi_read(raw, zk, root):
    zk.create(f"{root}/mr", b"data")
    zk.create(f"{root}/mr/c")
    header = lambda op: w._int(op) + w._bool(False) + w._int(-1)
    body = (
        header(w.GET_DATA) + w._string(f"{root}/mr") + w._bool(False)
        + header(w.GET_CHILDREN) + w._string(f"{root}/mr") + w._bool(False)
        + header(w.GET_DATA) + w._string(f"{root}/nope") + w._bool(False)
        + w._int(-1) + w._bool(True) + w._int(-1)
    )
    err, _, r = raw.call(MULTI_READ, body)
    assert err == w.OK
    assert (r.int(), r.bool(), r.int()) == (w.GET_DATA, False, 0)
    assert r.buffer() == b"data"
    r.stat()
    assert (r.int(), r.bool(), r.int()) == (w.GET_CHILDREN, False, 0)
    assert [r.string() for _ in range(r.int())] == ["c"]
    assert (r.int(), r.bool(), r.int()) == (-1, False, w.NO_NODE)
    assert r.int() == w.NO_NODE
    assert (r.int(), r.bool(), r.int()) == (-1, True, -1)
