"""multi(): all operations commit together or none does, with per-operation results."""

import threading

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType


def test_transaction_commits_all(zk, root):
    zk.create(f"{root}/t", b"v0")
    zk.create(f"{root}/gone")
    t = zk.transaction()
    t.check(f"{root}/t", 0)
    t.create(f"{root}/t/x", b"1")
    t.set_data(f"{root}/t", b"v1")
    t.delete(f"{root}/gone")
    t.create(f"{root}/t/s-", b"", sequence=True)
    results = t.commit()
    assert len(results) == 5
    assert results[0] is True
    assert results[1] == f"{root}/t/x"
    assert results[2].version == 1  # set_data gives the new stat
    assert results[3] is True
    assert results[4] == f"{root}/t/s-0000000001"
    assert zk.get(f"{root}/t")[0] == b"v1"
    assert zk.get(f"{root}/t/x")[0] == b"1"
    assert zk.exists(f"{root}/gone") is None


def test_transaction_with_context_manager(zk, root):
    with zk.transaction() as t:
        t.create(f"{root}/a", b"a")
        t.create(f"{root}/a/b", b"b")  # sees the create before it
    assert zk.get(f"{root}/a/b")[0] == b"b"


def test_failed_check_rolls_back_everything(zk, root):
    zk.create(f"{root}/t", b"v0")
    t = zk.transaction()
    t.create(f"{root}/t/y")
    t.check(f"{root}/t", 99)
    t.set_data(f"{root}/t", b"never")
    t.create(f"{root}/nope/z")
    results = t.commit()
    # Before the failure: RolledBackError (code 0); the failure itself; after it:
    # RuntimeInconsistency (code -2).
    assert [type(r) for r in results] == [
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,
        RuntimeInconsistency,
    ]
    assert zk.exists(f"{root}/t/y") is None
    data, stat = zk.get(f"{root}/t")
    assert data == b"v0" and stat.version == 0


def test_failed_create_and_delete_in_transaction(zk, root):
    zk.create(f"{root}/p")
    zk.create(f"{root}/p/c")
    t = zk.transaction()
    t.create(f"{root}/new")
    t.create(f"{root}/new")
    assert [type(r) for r in t.commit()] == [RolledBackError, NodeExistsError]
    assert zk.exists(f"{root}/new") is None

    t = zk.transaction()
    t.create(f"{root}/p/d")
    t.delete(f"{root}/p")
    assert [type(r) for r in t.commit()] == [RolledBackError, NotEmptyError]
    assert sorted(zk.get_children(f"{root}/p")) == ["c"]

    t = zk.transaction()
    t.set_data(f"{root}/missing", b"x")
    t.create(f"{root}/other")
    assert [type(r) for r in t.commit()] == [NoNodeError, RuntimeInconsistency]
    assert zk.exists(f"{root}/other") is None


def test_transaction_versions_and_zxid(zk, root):
    zk.create(f"{root}/a")
    zk.create(f"{root}/b")
    t = zk.transaction()
    t.set_data(f"{root}/a", b"1", version=0)
    t.set_data(f"{root}/b", b"1", version=0)
    r = t.commit()
    # One transaction, one zxid.
    assert r[0].mzxid == r[1].mzxid
    t = zk.transaction()
    t.set_data(f"{root}/a", b"2", version=1)
    t.set_data(f"{root}/b", b"2", version=0)  # stale
    assert [type(x) for x in t.commit()] == [RolledBackError, BadVersionError]
    assert zk.get(f"{root}/a")[1].version == 1


def test_transaction_fires_watches(zk, zk2, root):
    zk.create(f"{root}/w")
    changed, child = threading.Event(), threading.Event()
    types = []
    zk2.get(f"{root}/w", watch=lambda e: (types.append(e.type), changed.set()))
    zk2.get_children(root, watch=lambda e: (types.append(e.type), child.set()))
    t = zk.transaction()
    t.set_data(f"{root}/w", b"x")
    t.create(f"{root}/new")
    t.commit()
    assert changed.wait(10) and child.wait(10)
    assert sorted(types) == sorted([EventType.CHANGED, EventType.CHILD])


def test_failed_transaction_fires_no_watch(zk, zk2, root):
    zk.create(f"{root}/w")
    fired = threading.Event()
    zk2.get(f"{root}/w", watch=lambda e: fired.set())
    t = zk.transaction()
    t.set_data(f"{root}/w", b"x")
    t.check(f"{root}/w", 42)
    t.commit()
    assert not fired.wait(1.0)
