"""Changing the members of a running zkraft ensemble, process by process, under a write load.

zkraft only, on an ensemble of its own (it changes the members):

    ZK_MEMBERSHIP_TESTS=1 python3 tests/kazoo/run.py --target zkraft \
        --exec python3 -m pytest -p no:cacheprovider tests/kazoo/test_membership.py

The tests start further `zkraft-server` processes (`--join`, from run.py's ZK_ZKRAFT) and stop
only those, by pid. They run in file order, each starting from the three members run.py
started and leaving them so. Throughout, a kazoo writer sets its znodes one write at a time;
after each step every member (one client on each alone, after a sync) holds the same znodes,
and no acknowledged write is missing.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from conftest import MEMBERS, SUPER_AUTH, TARGET, four_letter, wait_until

pytestmark = pytest.mark.skipif(
    TARGET != "zkraft" or not os.environ.get("ZK_ZKRAFT") or not SUPER_AUTH,
    reason="zkraft only, started by run.py",
)

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
ROOT = "/membership"
# The longest a write may wait through one change: an election timeout (1-2 s at the
# default 100 ms ticks) and a margin for the loaded CI machine.
MAX_WRITE_GAP = 3.0


def _zkraft():
    with open(os.environ["ZK_ZKRAFT"]) as f:
        return json.load(f)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Extra:
    """A zkraft-server process this test started (stopped by its pid only)."""

    def __init__(self, mid, peer, client, all_peers):
        cfg = _zkraft()
        self.id = mid
        self.peer = peer
        self.client = client
        self.data_dir = os.path.join(cfg["workdir"], f"extra{mid}-{time.monotonic_ns()}")
        self.log_path = self.data_dir + ".log"
        peers = ",".join(f"{i}={a}" for i, a in sorted(all_peers.items()))
        self.argv = [
            cfg["binary"], "--id", str(mid), "--join", "--peers", peers,
            "--data-dir", self.data_dir, "--client-addr", f"127.0.0.1:{client}", *cfg["args"],
        ]
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def hostport(self):
        return f"127.0.0.1:{self.client}"

    def spec(self, role="participant"):
        return f"server.{self.id}={self.peer}:0:{role};127.0.0.1:{self.client}"


class Writer(threading.Thread):
    """Sets ROOT/w to 1, 2, 3... one write at a time; keeps the longest gap between successes."""

    def __init__(self, hosts):
        super().__init__(daemon=True)
        self.client = KazooClient(hosts=hosts, timeout=20.0, connection_retry={
            "max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5})
        self.states = []
        self.client.add_listener(self.states.append)
        self.client.start(timeout=30)
        self.client.ensure_path(ROOT)
        self.client.create(f"{ROOT}/w", b"0") if not self.client.exists(f"{ROOT}/w") else None
        self.acked = int(self.client.get(f"{ROOT}/w")[0])
        self.stop_flag = threading.Event()
        self.hold = threading.Event()  # set: pause between writes
        self.held = threading.Event()  # set by the writer once it pauses
        self.last_ok = time.monotonic()
        self.max_gap = 0.0
        self.lock = threading.Lock()

    def run(self):
        value = self.acked
        while not self.stop_flag.is_set():
            if self.hold.is_set():
                self.held.set()
                time.sleep(0.01)
                continue
            self.held.clear()
            value += 1
            try:
                self.client.set(f"{ROOT}/w", str(value).encode())
            except Exception:
                time.sleep(0.01)
                continue
            now = time.monotonic()
            with self.lock:
                self.max_gap = max(self.max_gap, now - self.last_ok)
                self.last_ok = now
                self.acked = value

    def pause(self):
        """Stops writing (no write in flight once this returns); the gap clock stops too."""
        self.hold.set()
        assert self.held.wait(timeout=60), "the writer did not pause"

    def resume(self):
        self.reset_gap()
        self.hold.clear()

    def reset_gap(self):
        with self.lock:
            self.max_gap, self.last_ok = 0.0, time.monotonic()

    def finish(self):
        self.stop_flag.set()
        self.join(timeout=30)
        # Before stop(): kazoo reports its own close as LOST too.
        lost = KazooState.LOST in self.states
        self.client.stop()
        self.client.close()
        assert not lost, "the writer's session expired"


@contextlib.contextmanager
def _client(hosts, timeout=20.0, **kwargs):
    """A started kazoo client, stopped and closed on the way out."""
    c = KazooClient(hosts=hosts, timeout=timeout, **kwargs)
    c.start(timeout=30)
    try:
        yield c
    finally:
        c.stop()
        c.close()


def _super(hosts):
    return _client(hosts, auth_data=[("digest", SUPER_AUTH)])


def _config(client):
    client.sync("/zookeeper/config")
    text = client.get("/zookeeper/config")[0].decode()
    roles = {}
    for line in text.splitlines():
        if line.startswith("server."):
            key, spec = line.split("=", 1)
            roles[int(key[len("server."):])] = spec.split(";")[0].rsplit(":", 1)[1]
    return roles


def _four(hostport, word):
    host, port = hostport.rsplit(":", 1)
    return four_letter(host, int(port), word, timeout=2.0)


def _mode(hostport):
    for line in _four(hostport, "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _contents(hostport):
    """Every znode under ROOT on the member at `hostport` alone, after a sync."""
    with _client(hostport) as c:
        c.sync(ROOT)
        out = {}
        todo = [ROOT]
        while todo:
            p = todo.pop()
            data, stat = c.get(p)
            out[p] = (data, stat.mzxid, stat.version)
            todo.extend(f"{p}/{ch}" for ch in c.get_children(p))
        return out


def _agree(hostports, writer):
    """With the writer paused: every member holds the same znodes, and its last acknowledged
    value (or a later one whose answer was lost)."""
    gap = writer.max_gap
    writer.pause()
    try:
        acked = writer.acked

        def same():
            seen = [_contents(h) for h in hostports]
            return all(s == seen[0] for s in seen) and seen

        seen = wait_until(same, timeout=30, what=f"{hostports} to agree")
        value = int(seen[0][f"{ROOT}/w"][0])
        assert value >= acked, f"acknowledged {acked} but the members hold {value}"

        # And their digests (`hash`: zxid and digest of the whole tree and its sessions),
        # once every member has applied the same entries.
        def digests():
            found = {_four(h, "hash").strip() for h in hostports}
            return len(found) == 1 and found

        wait_until(digests, timeout=30, what=f"{hostports} to report the same digest")
    finally:
        writer.resume()
        # The pause is not a stretch without writes the ensemble caused.
        with writer.lock:
            writer.max_gap = gap


def _zkcli(host, commands):
    script = "\n".join([f"addauth digest {SUPER_AUTH}", *commands, "quit"]) + "\n"
    done = subprocess.run([ZKCLI, "-server", host], input=script, capture_output=True,
                          text=True, timeout=120)
    return done.stdout + done.stderr


def _server_reconfig(host, *args):
    done = subprocess.run([_zkraft()["binary"], "reconfig", "--server", host, "--auth", SUPER_AUTH,
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def cluster():
    """The three members, a writer on them, and whatever this test starts (stopped after)."""
    originals = {m["id"]: f"{m['host']}:{m['port']}" for m in MEMBERS}
    peers = {int(i): a for i, a in _zkraft()["peers"].items()}
    state = {"originals": originals, "peers": peers, "extras": []}
    writer = Writer(",".join(originals.values()))
    writer.start()
    state["writer"] = writer
    yield state
    try:
        writer.finish()
    finally:
        # Whatever a failed test left in the configuration goes (best effort), so that the
        # next test starts from the three members.
        try:
            with _super(",".join(originals.values())) as admin:
                extra_ids = [i for i in _config(admin) if i not in originals]
            if extra_ids:
                _server_reconfig(next(iter(originals.values())), "--remove",
                                 ",".join(map(str, extra_ids)))
        except Exception:
            pass
        for e in state["extras"]:
            e.stop()


def _extra(cluster, mid):
    peers = dict(cluster["peers"])
    peers[mid] = f"127.0.0.1:{_free_port()}"
    e = Extra(mid, peers[mid], _free_port(), peers)
    cluster["extras"].append(e)
    return e


@pytest.mark.skipif(not os.path.exists(ZKCLI), reason="Debian's zookeeper package is not installed")
def test_grow_to_five_through_zkcli_and_the_server_command_then_back(cluster):
    originals, writer = cluster["originals"], cluster["writer"]
    first = next(iter(originals.values()))
    four, five = _extra(cluster, 4), _extra(cluster, 5)
    writer.reset_gap()
    out = _zkcli(first, [f"reconfig -add {four.spec()}"])
    assert f"server.4={four.peer}:0:participant" in out, out
    out = _server_reconfig(first, "--add", five.spec())
    assert f"server.5={five.peer}:0:participant" in out, out
    with _super(first) as admin:
        assert _config(admin) == {1: "participant", 2: "participant", 3: "participant",
                                  4: "participant", 5: "participant"}
        wait_until(lambda: _mode(four.hostport()) in ("follower", "leader")
                   and _mode(five.hostport()) in ("follower", "leader"),
                   timeout=30, what="4 and 5 to vote")
        all5 = list(originals.values()) + [four.hostport(), five.hostport()]
        _agree(all5, writer)
        assert writer.max_gap < MAX_WRITE_GAP, f"writes stopped for {writer.max_gap:.2f} s"

        # Back to three: 4 through zkCli, 5 through the server command.
        writer.reset_gap()
        out = _zkcli(first, ["reconfig -remove 4"])
        assert "server.4=" not in out.split("Committed new configuration:")[-1], out
        _server_reconfig(first, "--remove", "5")
        assert sorted(_config(admin)) == [1, 2, 3]
        _agree(list(originals.values()), writer)
        assert writer.max_gap < MAX_WRITE_GAP, f"writes stopped for {writer.max_gap:.2f} s"


def test_an_observer_serves_and_never_makes_a_quorum(cluster, ensemble):
    originals, writer = cluster["originals"], cluster["writer"]
    first = next(iter(originals.values()))
    obs = _extra(cluster, 7)
    _server_reconfig(first, "--add", obs.spec("observer"))
    with _super(first) as admin:
        assert _config(admin)[7] == "observer"
        wait_until(lambda: _mode(obs.hostport()) == "observer", timeout=30, what="Mode: observer")
        _agree(list(originals.values()) + [obs.hostport()], writer)
        # A client of the observer reads and writes (forwarded).
        with _client(obs.hostport()) as c:
            c.create(f"{ROOT}/from-observer", b"o", makepath=True)
            admin.sync(ROOT)
            assert admin.exists(f"{ROOT}/from-observer")
            # Two of three voters stopped: with the observer, three of four processes live,
            # yet nothing commits: the observer does not vote.
            ensemble.stop(2)
            ensemble.stop(3)
            try:
                with pytest.raises(Exception):
                    c.set(f"{ROOT}/from-observer", b"must not commit")
                assert c.get(f"{ROOT}/from-observer")[0] == b"o"
            finally:
                # Started together: one alone has no quorum.
                starters = [threading.Thread(target=ensemble.start, args=(i,)) for i in (2, 3)]
                for t in starters:
                    t.start()
                for t in starters:
                    t.join(timeout=120)
            # The refused write's outcome was unknown, not a failure: it may commit once
            # the quorum is back (raft keeps it in the leader's log).
            wait_until(lambda: c.get(f"{ROOT}/from-observer")[0] in (b"o", b"must not commit"),
                       timeout=30, what="the observer serving again")
        _server_reconfig(first, "--remove", "7")
        assert sorted(_config(admin)) == [1, 2, 3]


def test_the_leader_is_removed_and_a_killed_member_replaced(cluster, ensemble):
    originals, writer = cluster["originals"], cluster["writer"]
    modes = {i: _mode(h) for i, h in originals.items()}
    leader = next(i for i, m in modes.items() if m == "leader")
    others = [h for i, h in originals.items() if i != leader]
    with _super(",".join(others)) as admin:
        # The leader hands over, then leaves; writes pause for a moment only.
        writer.reset_gap()
        _server_reconfig(others[0], "--remove", str(leader))
        assert leader not in _config(admin)
        wait_until(lambda: any(_mode(h) == "leader" for h in others), timeout=20,
                   what="a new leader among the others")
        # The removed member says so, and serves no client.
        wait_until(lambda: "not currently serving" in _four(originals[leader], "srvr"),
                   timeout=20, what="the removed member to stop serving")
        ensemble.stop(leader)
        assert writer.max_gap < MAX_WRITE_GAP, f"writes stopped for {writer.max_gap:.2f} s"

        # A fresh member on a new data directory takes the removed one's place.
        fresh = _extra(cluster, 8)
        _server_reconfig(others[0], "--add", fresh.spec())
        _agree(others + [fresh.hostport()], writer)

        # It is killed with kill -9; another fresh member, on a new data directory, replaces
        # it.
        fresh.kill()
        _server_reconfig(others[0], "--remove", "8")
        again = _extra(cluster, 9)
        _server_reconfig(others[0], "--add", again.spec())
        _agree(others + [again.hostport()], writer)

        # The original member comes back under its own id, from its old directory: it is
        # added again (it catches up, and votes once it has).
        ensemble.control("launch", leader)
        _server_reconfig(others[0], "--remove", "9", "--add",
                         f"server.{leader}={cluster['peers'][leader]}:0:participant")
        wait_until(lambda: _mode(originals[leader]) in ("follower", "leader"), timeout=30,
                   what=f"member {leader} voting again")
        _agree(list(originals.values()), writer)
        assert sorted(_config(admin)) == [1, 2, 3]


def test_a_rolling_restart_under_load_expires_no_session(cluster, ensemble):
    originals, writer = cluster["originals"], cluster["writer"]
    held = KazooClient(hosts=",".join(originals.values()), timeout=10.0)
    held.start(timeout=30)
    states = []
    held.add_listener(states.append)
    sid = held.client_id[0]
    held.create(f"{ROOT}/held-{sid:x}", b"", ephemeral=True, makepath=True)
    try:
        writer.reset_gap()
        for mid in sorted(originals):
            ensemble.stop(mid)
            ensemble.start(mid)
        _agree(list(originals.values()), writer)
        assert KazooState.LOST not in states, "a session expired during the rolling restart"
        assert held.client_id[0] == sid
        assert held.exists(f"{ROOT}/held-{sid:x}")
        assert writer.max_gap < MAX_WRITE_GAP, f"writes stopped for {writer.max_gap:.2f} s"
    finally:
        held.stop()
        held.close()
