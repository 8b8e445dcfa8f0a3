"""Sessions: ephemerals live exactly as long as their session; expiry; session id reuse."""

import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, KazooState

from conftest import wait_until

# A client in another process: it connects with a short session timeout, creates an
# ephemeral, says so, and then sleeps until it is killed (never closing its session).
CHILD = textwrap.dedent(
    """
    import sys, time
    from kazoo.client import KazooClient
    hosts, path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    c = KazooClient(hosts=hosts, timeout=timeout)
    c.start(timeout=15)
    c.create(path, b"child", ephemeral=True)
    print("ready %d" % c.client_id[0], flush=True)
    time.sleep(120)
    """
)


def _spawn_owner(hosts, path, timeout=4.0):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, hosts.split(",")[0], path, str(timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        proc.wait(10)
        pytest.fail("the owner process did not create its ephemeral in 20s")
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready", line
    return proc, int(line[1])


def test_ephemeral_outlives_connection_until_session_expires(zk, root, hosts):
    path = f"{root}/eph"
    proc, session = _spawn_owner(hosts, path, timeout=4.0)
    try:
        assert zk.exists(path).ephemeralOwner == session
        deleted = threading.Event()
        zk.exists(path, watch=lambda e: e.type == EventType.DELETED and deleted.set())
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # no close: the session must time out
        proc.wait(10)
        # The connection is gone, the session is not: the ephemeral stays for now.
        time.sleep(0.5)
        assert zk.exists(path) is not None, "ephemeral removed before its session expired"
        assert deleted.wait(30), "ephemeral still there 30s after its owner died"
        elapsed = time.monotonic() - killed_at
        # Negotiated timeout >= 4 s (ZooKeeper's minimum is 2 ticks); expiry is not early.
        assert elapsed >= 3.0, f"session expired {elapsed:.1f}s after the kill"
        assert zk.exists(path) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_session_expiry_via_same_session_close(make_client, root, hosts):
    # The documented trick: a second client opens the first one's session (same id and
    # password) and closes it. The first client's session is then expired.
    states = []
    first = KazooClient(hosts=hosts, timeout=10.0, randomize_hosts=False)
    first.add_listener(states.append)
    try:
        first.start(timeout=15)
        observer = make_client()
        path = f"{root}/eph"
        first.create(path, ephemeral=True)
        old_session = first.client_id[0]
        assert observer.exists(path).ephemeralOwner == old_session

        twin = KazooClient(hosts=hosts, client_id=first.client_id, timeout=10.0, randomize_hosts=False)
        twin.start(timeout=15)
        assert twin.client_id[0] == old_session
        twin.stop()  # closes the session
        twin.close()

        wait_until(lambda: observer.exists(path) is None, timeout=10, what="ephemeral removed")
        wait_until(lambda: KazooState.LOST in states, timeout=30, what="first client LOST")
        # kazoo then makes a new session by itself.
        wait_until(lambda: first.connected, timeout=30, what="first client reconnected")
        assert first.client_id[0] != old_session
        assert states.index(KazooState.LOST) > 0
    finally:
        first.stop()
        first.close()


def test_same_session_id_with_wrong_password_is_refused(make_client, hosts):
    first = make_client()
    sid, password = first.client_id
    bad = bytes((b ^ 0xFF) for b in password)
    states = []
    twin = KazooClient(hosts=hosts, client_id=(sid, bad), timeout=10.0, randomize_hosts=False)
    twin.add_listener(states.append)
    try:
        # ZooKeeper answers a wrong password as an expired session.
        try:
            twin.start(timeout=15)
        except Exception:
            pass
        wait_until(lambda: KazooState.LOST in states or (twin.connected and twin.client_id[0] != sid),
                   timeout=20, what="refused")
        assert first.connected and first.client_id[0] == sid
        assert first.exists("/") is not None
    finally:
        twin.stop()
        twin.close()


def test_close_removes_all_ephemerals_at_once(make_client, root):
    owner = make_client()
    observer = make_client()
    for i in range(10):
        owner.create(f"{root}/e{i}", ephemeral=True)
    gone = threading.Event()
    observer.get_children(root, watch=lambda e: gone.set())
    owner.stop()
    owner.close()
    assert gone.wait(10)
    wait_until(lambda: observer.get_children(root) == [], timeout=10, what="all ephemerals gone")


def test_idle_session_is_kept_alive_by_pings(make_client):
    # A client asking for a session timeout below the server's minimum gets at least the
    # minimum; an idle client's pings keep its session for longer than that.
    c = make_client(timeout=1.0)
    sid = c.client_id[0]
    time.sleep(3.0)
    assert c.connected and c.client_id[0] == sid
    assert c.exists("/") is not None
