"""One-shot watches (data, exists, child), their events, and kazoo's watch recipes."""

import threading
import time

from kazoo.protocol.states import EventType, KeeperState
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from conftest import wait_until

QUIET = 1.0  # seconds we wait to be sure an event does NOT come


def test_data_watch_fires_once_on_change(zk, zk2, root, events):
    path = f"{root}/d"
    zk.create(path, b"0")
    got = events()
    data, _ = zk.get(path, watch=got)
    assert data == b"0"
    zk2.set(path, b"1")
    evs = got.wait_count(1)
    assert evs[0].type == EventType.CHANGED
    assert evs[0].path == path
    assert evs[0].state == KeeperState.CONNECTED
    # One-shot: a second change brings nothing unless the watch is set again.
    zk2.set(path, b"2")
    time.sleep(QUIET)
    assert len(got.snapshot()) == 1
    zk.get(path, watch=got)
    zk2.set(path, b"3")
    assert got.wait_count(2)[1].type == EventType.CHANGED


def test_data_watch_fires_on_delete(zk, zk2, root, events):
    path = f"{root}/d"
    zk.create(path)
    got = events()
    zk.get(path, watch=got)
    zk2.delete(path)
    ev = got.wait_count(1)[0]
    assert ev.type == EventType.DELETED
    assert ev.path == path


def test_exists_watch_on_missing_node_fires_created(zk, zk2, root, events):
    path = f"{root}/later"
    got = events()
    assert zk.exists(path, watch=got) is None
    zk2.create(path, b"x")
    ev = got.wait_count(1)[0]
    assert ev.type == EventType.CREATED
    assert ev.path == path
    time.sleep(QUIET)
    assert len(got.snapshot()) == 1


def test_exists_watch_on_existing_node(zk, zk2, root, events):
    path = f"{root}/e"
    zk.create(path)
    changed = events()
    assert zk.exists(path, watch=changed) is not None
    zk2.set(path, b"v")
    assert changed.wait_count(1)[0].type == EventType.CHANGED
    deleted = events()
    zk.exists(path, watch=deleted)
    zk2.delete(path)
    assert deleted.wait_count(1)[0].type == EventType.DELETED


def test_child_watch(zk, zk2, root, events):
    got = events()
    assert zk.get_children(root, watch=got) == []
    zk2.create(f"{root}/c1")
    ev = got.wait_count(1)[0]
    assert ev.type == EventType.CHILD
    assert ev.path == root
    # One-shot: nothing for the next child until set again.
    zk2.create(f"{root}/c2")
    time.sleep(QUIET)
    assert len(got.snapshot()) == 1
    # Deleting a child fires it too; a child's data change does not.
    got2 = events()
    assert sorted(zk.get_children(root, watch=got2)) == ["c1", "c2"]
    zk2.set(f"{root}/c1", b"data")
    time.sleep(QUIET)
    assert got2.snapshot() == []
    zk2.delete(f"{root}/c1")
    assert got2.wait_count(1)[0].type == EventType.CHILD


def test_child_watch_fires_deleted_when_parent_goes(zk, zk2, root, events):
    parent = f"{root}/p"
    zk.create(parent)
    got = events()
    zk.get_children(parent, watch=got)
    zk2.delete(parent)
    ev = got.wait_count(1)[0]
    assert ev.type == EventType.DELETED
    assert ev.path == parent


def test_own_change_fires_own_watch(zk, root, events):
    path = f"{root}/self"
    zk.create(path)
    got = events()
    zk.get(path, watch=got)
    zk.set(path, b"mine")
    assert got.wait_count(1)[0].type == EventType.CHANGED


def test_watch_event_precedes_the_new_data(zk, zk2, root):
    # ZooKeeper's ordering guarantee: a client sees the watch event before it can see the
    # data that triggered it. The watcher reads the value inside the callback.
    path = f"{root}/order"
    zk.create(path, b"0")
    seen = []
    done = threading.Event()

    def watcher(event):
        seen.append(event.type)
        done.set()

    zk.get(path, watch=watcher)
    zk2.set(path, b"1")
    assert done.wait(10)
    assert seen == [EventType.CHANGED]
    assert zk.get(path)[0] == b"1"


def test_many_watchers_same_path_all_fire(make_client, root):
    writer = make_client()
    clients = [make_client() for _ in range(3)]
    path = f"{root}/fan"
    writer.create(path)
    fired = [threading.Event() for _ in clients]
    for c, ev in zip(clients, fired):
        c.get(path, watch=lambda e, ev=ev: ev.set())
    writer.set(path, b"go")
    for ev in fired:
        assert ev.wait(10)


def test_data_watch_recipe(zk, zk2, root, events):
    path = f"{root}/dw"
    seen = events()

    @DataWatch(zk, path)
    def watch(data, stat):
        seen((data, None if stat is None else stat.version))

    seen.wait_count(1)
    assert seen.snapshot()[0] == (None, None)  # called once at once: node missing
    zk2.create(path, b"a")
    seen.wait_count(2)
    zk2.set(path, b"b")
    seen.wait_count(3)
    zk2.delete(path)
    seen.wait_count(4)
    assert seen.snapshot() == [(None, None), (b"a", 0), (b"b", 1), (None, None)]


def test_children_watch_recipe(zk, zk2, root, events):
    seen = events()

    @ChildrenWatch(zk, root)
    def watch(children):
        seen(sorted(children))

    seen.wait_count(1)
    zk2.create(f"{root}/a")
    seen.wait_for(lambda items: items and items[-1] == ["a"], what="child a")
    zk2.create(f"{root}/b")
    seen.wait_for(lambda items: items and items[-1] == ["a", "b"], what="children a, b")
    zk2.delete(f"{root}/a")
    seen.wait_for(lambda items: items and items[-1] == ["b"], what="child b")
    assert seen.snapshot()[0] == []


def test_children_watch_recipe_stops(zk, zk2, root, events):
    seen = events()

    def watch(children):
        seen(sorted(children))
        return False if "stop" in children else None

    ChildrenWatch(zk, root, watch)
    seen.wait_count(1)
    zk2.create(f"{root}/stop")
    seen.wait_count(2)
    zk2.create(f"{root}/after")
    time.sleep(QUIET)
    assert len(seen.snapshot()) == 2


def test_watches_on_many_paths_in_one_session(zk, zk2, root):
    n = 30
    fired = [threading.Event() for _ in range(n)]
    for i in range(n):
        zk.create(f"{root}/n{i}")
        zk.get(f"{root}/n{i}", watch=lambda e, i=i: fired[i].set())
    for i in range(n):
        zk2.set(f"{root}/n{i}", b"x")
    wait_until(lambda: all(f.is_set() for f in fired), timeout=15, what="all watches")
