"""Read-only mode (ZooKeeper's readonlymode.enabled; zkraft-server --read-only-mode): a member
cut off from the quorum serves clients that asked for a read-only session, from its own state,
and refuses their writes with NotReadOnly; when the quorum is back, the client sees
ConnectedReadOnly give way to Connected, as with ZooKeeper. After kazoo's own upstream test
(kazoo/tests/test_connection.py, TestReadOnlyMode).
"""

import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState

from conftest import CONTROL, wait_until

pytestmark = pytest.mark.skipif(not CONTROL, reason="needs run.py's ZK_CONTROL")

RETRY = {"max_tries": -1, "delay": 0.2, "backoff": 1.2, "max_delay": 1.0}


def _together(verb, ensemble, ids):
    threads = [threading.Thread(target=getattr(ensemble, verb), args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)


def test_read_only_mode(make_client, ensemble, root):
    home = ensemble.members[0]["id"]
    others = [m["id"] for m in ensemble.members if m["id"] != home]
    home_hosts = ensemble.hostport(home)
    writer = make_client(hosts=home_hosts)
    writer.create(f"{root}/x", b"kept")
    writer.sync(root)

    client = KazooClient(hosts=home_hosts, read_only=True, timeout=10.0, connection_retry=RETRY)
    states = []
    client.add_listener(lambda s: states.append(client.client_state))
    client.start(timeout=30)
    try:
        assert client.client_state == KeeperState.CONNECTED
        _together("stop", ensemble, others)
        # As kazoo's test: a fresh session, on the member left alone.
        client.stop()
        client.start(timeout=60)
        wait_until(lambda: client.client_state == KeeperState.CONNECTED_RO, timeout=60,
                   what="ConnectedReadOnly")
        # Reads are served from the member's own state; writes are refused.
        assert client.get(f"{root}/x")[0] == b"kept"
        assert client.get_children(root) == ["x"]
        with pytest.raises(NotReadOnlyCallError):
            client.create(f"{root}/fred")
        with pytest.raises(NotReadOnlyCallError):
            client.set(f"{root}/x", b"changed")
        # Pings keep the read-only session: still connected a while later.
        time.sleep(5)
        assert client.client_state == KeeperState.CONNECTED_RO
        assert client.get(f"{root}/x")[0] == b"kept"
        # A client that did not ask for read-only is not served.
        plain = KazooClient(hosts=home_hosts, timeout=5.0,
                            connection_retry={"max_tries": 2, "delay": 0.2})
        with pytest.raises(Exception):
            plain.start(timeout=5)
        plain.stop()
        plain.close()
    finally:
        _together("start", ensemble, others)
    try:
        # The quorum is back: the client moves to a read-write session.
        wait_until(lambda: client.client_state == KeeperState.CONNECTED, timeout=60,
                   what="Connected again")
        assert KeeperState.CONNECTED_RO in states
        client.create(f"{root}/after", b"rw")
        assert client.get(f"{root}/after")[0] == b"rw"
    finally:
        client.stop()
        client.close()
