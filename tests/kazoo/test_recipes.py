"""kazoo's recipes: they exercise sequential ephemerals, watches and versions together."""

import threading
import time

import pytest
from kazoo.exceptions import LockTimeout
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock, ReadLock, Semaphore, WriteLock
from kazoo.recipe.party import Party, ShallowParty
from kazoo.recipe.queue import LockingQueue, Queue

from conftest import wait_until


def _thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def test_lock_two_clients_contend(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/lock"
    lock_a = Lock(a, path, "a")
    lock_b = Lock(b, path, "b")
    assert lock_a.acquire(timeout=10)
    assert not lock_b.acquire(blocking=False)
    with pytest.raises(LockTimeout):
        lock_b.acquire(timeout=0.5)

    got_b = threading.Event()
    release_b = threading.Event()

    def contend():
        if lock_b.acquire(timeout=20):  # raises LockTimeout if not
            got_b.set()
            release_b.wait(20)
            lock_b.release()

    t = _thread(contend)
    wait_until(lambda: lock_a.contenders() == ["a", "b"], timeout=10, what="b queued")
    time.sleep(0.5)
    assert not got_b.is_set()
    lock_a.release()
    assert got_b.wait(10)
    assert lock_a.contenders() == ["b"]
    release_b.set()
    t.join(10)
    assert lock_a.contenders() == []


def test_lock_released_when_holder_session_closes(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/lock"
    assert Lock(a, path, "a").acquire(timeout=10)
    lock_b = Lock(b, path, "b")
    assert not lock_b.acquire(blocking=False)
    a.stop()
    a.close()
    assert lock_b.acquire(timeout=15)
    lock_b.release()


def test_read_write_locks(make_client, root):
    a, b, c = make_client(), make_client(), make_client()
    path = f"{root}/rw"
    r1 = ReadLock(a, path)
    r2 = ReadLock(b, path)
    w = WriteLock(c, path)
    assert r1.acquire(timeout=10)
    assert r2.acquire(timeout=10)  # readers share
    with pytest.raises(LockTimeout):
        w.acquire(timeout=0.5)
    r1.release()
    r2.release()
    assert w.acquire(timeout=10)
    with pytest.raises(LockTimeout):
        ReadLock(a, path).acquire(timeout=0.5)
    w.release()


def test_semaphore(make_client, root):
    clients = [make_client() for _ in range(3)]
    path = f"{root}/sem"
    sems = [Semaphore(c, path, identifier=f"c{i}", max_leases=2) for i, c in enumerate(clients)]
    assert sems[0].acquire(timeout=10)
    assert sems[1].acquire(timeout=10)
    with pytest.raises(LockTimeout):
        sems[2].acquire(timeout=0.5)
    assert sorted(sems[2].lease_holders()) == ["c0", "c1"]
    sems[0].release()
    assert sems[2].acquire(timeout=10)
    sems[1].release()
    sems[2].release()


def test_election(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/election"
    leader = []
    elected = {"a": threading.Event(), "b": threading.Event()}
    resign = {"a": threading.Event(), "b": threading.Event()}

    def lead(name):
        leader.append(name)
        elected[name].set()
        resign[name].wait(20)

    ea, eb = Election(a, path, "a"), Election(b, path, "b")
    ta = _thread(ea.run, lead, "a")
    assert elected["a"].wait(10)
    tb = _thread(eb.run, lead, "b")
    wait_until(lambda: eb.contenders() == ["a", "b"], timeout=10, what="both contenders")
    time.sleep(0.5)
    assert not elected["b"].is_set()
    resign["a"].set()  # a's function returns: it gives up leadership
    assert elected["b"].wait(10)
    assert leader == ["a", "b"]
    resign["b"].set()
    ta.join(10)
    tb.join(10)


def test_election_leader_session_loss(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/election"
    elected_a, elected_b = threading.Event(), threading.Event()
    stop_b = threading.Event()
    _thread(Election(a, path, "a").run, lambda: (elected_a.set(), time.sleep(30)))
    assert elected_a.wait(10)
    eb = Election(b, path, "b")
    tb = _thread(eb.run, lambda: (elected_b.set(), stop_b.wait(20)))
    wait_until(lambda: len(eb.contenders()) == 2, timeout=10, what="b queued")
    a.stop()  # the leader's session ends
    a.close()
    assert elected_b.wait(15)
    stop_b.set()
    tb.join(10)


def test_party(make_client, root):
    a, b, c = make_client(), make_client(), make_client()
    path = f"{root}/party"
    pa, pb = Party(a, path, "a"), Party(b, path, "b")
    watcher = Party(c, path)
    assert len(watcher) == 0
    pa.join()
    pb.join()
    assert sorted(watcher) == ["a", "b"]
    assert len(watcher) == 2
    pa.leave()
    assert list(watcher) == ["b"]
    b.stop()  # members are ephemeral
    b.close()
    wait_until(lambda: len(watcher) == 0, timeout=10, what="party empty")
    sp = ShallowParty(c, f"{root}/shallow", "x")
    sp.join()
    assert list(ShallowParty(a, f"{root}/shallow")) == ["x"]


def test_queue(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/queue"
    qa, qb = Queue(a, path), Queue(b, path)
    for v in (b"one", b"two", b"three"):
        qa.put(v)
    qa.put(b"urgent", priority=1)
    assert len(qb) == 4
    assert [qb.get() for _ in range(4)] == [b"urgent", b"one", b"two", b"three"]
    assert qb.get() is None
    assert len(qa) == 0


def test_locking_queue(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/lq"
    qa, qb = LockingQueue(a, path), LockingQueue(b, path)
    qa.put_all([b"x", b"y"])
    assert len(qb) == 2
    assert qb.get(timeout=10) == b"x"
    # b holds x: a gets the next free entry.
    assert qa.get(timeout=10) == b"y"
    assert qb.consume()
    assert qa.release()  # y goes back to the queue
    assert qb.get(timeout=10) == b"y"
    assert qb.consume()
    assert qa.get(timeout=0.5) is None
    assert len(qa) == 0


def test_barrier(make_client, root):
    a, b = make_client(), make_client()
    path = f"{root}/barrier"
    barrier_a, barrier_b = Barrier(a, path), Barrier(b, path)
    assert barrier_b.wait(timeout=0.5)  # no barrier: passes
    barrier_a.create()
    assert not barrier_b.wait(timeout=0.5)
    passed = threading.Event()
    t = _thread(lambda: barrier_b.wait(timeout=20) and passed.set())
    time.sleep(0.3)
    assert not passed.is_set()
    assert barrier_a.remove()
    assert passed.wait(10)
    t.join(10)


def test_double_barrier(make_client, root):
    clients = [make_client() for _ in range(3)]
    path = f"{root}/double"
    entered, left = [], []
    lock = threading.Lock()

    def member(i, client):
        db = DoubleBarrier(client, path, 3, identifier=f"m{i}")
        db.enter()
        with lock:
            entered.append((i, time.monotonic()))
        time.sleep(0.1 * i)
        db.leave()
        with lock:
            left.append((i, time.monotonic()))

    threads = []
    for i, c in enumerate(clients):
        threads.append(_thread(member, i, c))
        if i < 2:
            time.sleep(0.5)
            assert entered == []  # nobody enters before all three are there
    for t in threads:
        t.join(20)
    assert sorted(i for i, _ in entered) == [0, 1, 2]
    assert sorted(i for i, _ in left) == [0, 1, 2]
    # Nobody left before everybody entered.
    assert max(t for _, t in entered) <= min(t for _, t in left)


def test_counter_concurrent(make_client, root):
    clients = [make_client() for _ in range(3)]
    path = f"{root}/counter"
    n = 15

    def bump(client):
        counter = Counter(client, path)
        for _ in range(n):
            counter += 1

    threads = [_thread(bump, c) for c in clients]
    for t in threads:
        t.join(30)
    assert Counter(clients[0], path).value == 3 * n
    c = Counter(clients[1], path)
    c -= 5
    assert c.value == 3 * n - 5
    f = Counter(clients[2], f"{root}/float", default=0.0)
    f += 2.5
    assert f.value == 2.5


def test_tree_cache(make_client, events, root):
    writer, reader = make_client(), make_client()
    writer.create(f"{root}/t/a", b"1", makepath=True)
    seen = events()
    cache = TreeCache(reader, f"{root}/t")
    cache.listen(lambda ev: seen((ev.event_type, ev.event_data.path if ev.event_data else None)))
    cache.start()
    try:
        seen.wait_for(lambda items: (TreeEvent.INITIALIZED, None) in items, what="initialized")
        assert cache.get_data(f"{root}/t/a").data == b"1"
        writer.create(f"{root}/t/b/c", b"2", makepath=True)
        seen.wait_for(lambda items: (TreeEvent.NODE_ADDED, f"{root}/t/b/c") in items, what="c added")
        writer.set(f"{root}/t/a", b"3")
        seen.wait_for(lambda items: (TreeEvent.NODE_UPDATED, f"{root}/t/a") in items, what="a updated")
        assert cache.get_data(f"{root}/t/a").data == b"3"
        writer.delete(f"{root}/t/b", recursive=True)
        seen.wait_for(lambda items: (TreeEvent.NODE_REMOVED, f"{root}/t/b") in items, what="b removed")
        assert sorted(cache.get_children(f"{root}/t")) == ["a"]
    finally:
        cache.close()
