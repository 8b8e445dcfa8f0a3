"""A member goes down: sessions move to another member with their ephemerals and watches.

These tests ask the harness (run.py, through ZK_CONTROL) to kill a member by pid and to start
it again; they are skipped when the ensemble was not started by run.py.
"""

import pytest
from kazoo.protocol.states import EventType, KazooState
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from conftest import CONTROL, wait_until

pytestmark = pytest.mark.skipif(not CONTROL, reason="needs run.py's ZK_CONTROL")

RETRY = {"max_tries": -1, "delay": 0.1, "backoff": 1.5, "max_delay": 1.0}


def _real(events):
    """Node events only (kazoo may also hand session-state events to watchers)."""
    return [e for e in events if e.type != EventType.NONE]


def test_session_moves_to_another_member(make_client, ensemble, root, events):
    states = events()
    client = make_client(timeout=20.0, connection_retry=RETRY)
    client.add_listener(states)
    sid = client.client_id[0]
    eph = f"{root}/eph"
    data = f"{root}/data"
    client.create(eph, b"mine", ephemeral=True)
    client.create(data, b"0")
    # kazoo 2.11 does not carry one-shot watches over a reconnect (it hands them a NONE event
    # when the connection drops); its DataWatch / ChildrenWatch recipes set them again.
    seen_data = events()
    seen_children = events()
    DataWatch(client, data, lambda d, stat: seen_data(d))
    ChildrenWatch(client, root, lambda children: seen_children(sorted(children)))
    seen_data.wait_for(lambda v: v == [b"0"], what="DataWatch's first call")
    seen_children.wait_for(lambda v: v == [["data", "eph"]], what="ChildrenWatch's first call")

    homes = ensemble.member_of_session(sid)
    assert len(homes) == 1, f"cons of every member lists the session on {homes}"
    home = homes[0]
    ensemble.kill(home)
    try:
        states.wait_for(lambda s: KazooState.SUSPENDED in s, timeout=15, what="SUSPENDED")
        states.wait_for(
            lambda s: KazooState.SUSPENDED in s and s[-1] == KazooState.CONNECTED,
            timeout=45,
            what="CONNECTED again",
        )
        assert KazooState.LOST not in states.snapshot()
        assert client.client_id[0] == sid
        new_home = wait_until(
            lambda: ensemble.member_of_session(sid), timeout=10, what="the session in some cons"
        )
        assert new_home != [home] and len(new_home) == 1, new_home

        other = make_client(hosts=ensemble.others(home), connection_retry=RETRY)
        stat = other.exists(eph)
        assert stat is not None and stat.ephemeralOwner == sid

        # A one-shot watch set after the move fires.
        fired = events()
        client.get(data, watch=fired)
        other.set(data, b"1")
        fired.wait_for(lambda e: _real(e), timeout=10, what="one-shot watch after the move")
        assert [(e.type, e.path) for e in _real(fired.snapshot())] == [(EventType.CHANGED, data)]
        # The recipes' watches, set before the move, follow the session.
        seen_data.wait_for(lambda v: v and v[-1] == b"1", timeout=10, what="DataWatch after the move")
        other.create(f"{root}/new")
        seen_children.wait_for(
            lambda v: v and v[-1] == ["data", "eph", "new"], timeout=10, what="ChildrenWatch after the move"
        )

        # The session still works for writes, and its ephemeral is still its own.
        # (`other` may sit on a member that has not applied the set yet: ZooKeeper promises
        # a read on another member sees it only after a sync.)
        client.set(eph, b"still mine")
        other.sync(eph)
        assert other.get(eph)[0] == b"still mine"
    finally:
        ensemble.start(home)


def test_recipes_catch_up_with_changes_made_while_disconnected(make_client, ensemble, root, events):
    # The client talks to one member only; that member (the leader, so the others also elect
    # a new one) goes down, the watched znodes change meanwhile, the member comes back and the
    # client reconnects with the same session. (zkwire's test_set_watches_* checks the
    # server's setWatches itself; kazoo 2.11 re-reads instead.)
    modes = ensemble.modes()
    leaders = [mid for mid, mode in modes.items() if mode == "leader"]
    assert len(leaders) == 1, modes
    home = leaders[0]
    states = events()
    client = make_client(hosts=ensemble.hostport(home), timeout=30.0, connection_retry=RETRY)
    client.add_listener(states)
    sid = client.client_id[0]
    data, parent = f"{root}/data", f"{root}/parent"
    client.create(data, b"0")
    client.create(parent)
    client.create(f"{root}/eph", ephemeral=True)
    seen_data, seen_children = events(), events()
    DataWatch(client, data, lambda d, stat: seen_data(d))
    ChildrenWatch(client, parent, lambda children: seen_children(sorted(children)))
    seen_data.wait_count(1)
    seen_children.wait_count(1)

    ensemble.kill(home)
    try:
        states.wait_for(lambda s: KazooState.SUSPENDED in s, timeout=15, what="SUSPENDED")
        other = make_client(hosts=ensemble.others(home), connection_retry=RETRY, start_timeout=45)
        other.set(data, b"changed while away")
        other.create(f"{parent}/child")
        assert other.exists(f"{root}/eph").ephemeralOwner == sid
    finally:
        ensemble.start(home)

    states.wait_for(
        lambda s: KazooState.SUSPENDED in s and s[-1] == KazooState.CONNECTED,
        timeout=45,
        what="CONNECTED again",
    )
    assert KazooState.LOST not in states.snapshot()
    assert client.client_id[0] == sid
    seen_data.wait_for(lambda v: v[-1] == b"changed while away", timeout=15, what="DataWatch caught up")
    seen_children.wait_for(lambda v: v[-1] == ["child"], timeout=15, what="ChildrenWatch caught up")
    # The restarted member has the writes made while it was down.
    assert client.get(data)[0] == b"changed while away"
    assert client.exists(f"{root}/eph").ephemeralOwner == sid


def test_restarted_member_catches_up(make_client, ensemble, root):
    modes = ensemble.modes()
    follower = sorted(mid for mid, mode in modes.items() if mode == "follower")[0]
    writer = make_client(hosts=ensemble.others(follower), connection_retry=RETRY)
    ensemble.stop(follower)  # SIGTERM this time
    try:
        for i in range(20):
            writer.create(f"{root}/n{i}", str(i).encode())
    finally:
        ensemble.start(follower)
    reader = make_client(hosts=ensemble.hostport(follower))
    reader.sync(root)
    assert sorted(reader.get_children(root)) == sorted(f"n{i}" for i in range(20))
    assert reader.get(f"{root}/n19")[0] == b"19"
    wait_until(
        lambda: sorted(ensemble.modes().values()) == ["follower", "follower", "leader"],
        timeout=30,
        what="one leader and two followers again",
    )
