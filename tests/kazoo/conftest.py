"""Fixtures of the kazoo compatibility suite. run.py starts the ensemble and sets the env."""

import json
import os
import signal
import socket
import threading
import time
import uuid
import zlib

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from run import control

# test_membership.py changes the ensemble's members: it runs on an ensemble of its own
# (`ZK_MEMBERSHIP_TESTS=1 run.py --target zkraft --exec python3 -m pytest
# tests/kazoo/test_membership.py`, as ./dev test does).
# test_read_only.py stops two members and runs with ZooKeeper's local sessions on (as kazoo's
# own harness runs its read-only test): on an ensemble of its own too (ZK_READ_ONLY_TESTS=1).
collect_ignore = [
    name
    for name, env in [("test_membership.py", "ZK_MEMBERSHIP_TESTS"), ("test_read_only.py", "ZK_READ_ONLY_TESTS")]
    if not os.environ.get(env)
]

HOSTS = os.environ.get("ZK_HOSTS", "127.0.0.1:2181")
SUPER_AUTH = os.environ.get("ZK_SUPER_AUTH")  # "super:password"
CONTROL = os.environ.get("ZK_CONTROL")
TARGET = os.environ.get("ZK_TARGET", "unknown")
TEST_TIMEOUT = float(os.environ.get("ZK_TEST_TIMEOUT", "90"))


def _members():
    path = os.environ.get("ZK_MEMBERS")
    if path:
        with open(path) as f:
            return json.load(f)
    out = []
    for i, hp in enumerate(HOSTS.split(",")):
        host, port = hp.rsplit(":", 1)
        out.append({"id": i + 1, "host": host, "port": int(port)})
    return out


MEMBERS = _members()


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll `predicate` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # a predicate may race with a reconnect
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")
        time.sleep(interval)


def four_letter(host, port, cmd, timeout=5.0):
    """A four-letter word over a plain socket, read until the server closes the connection."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")


class Ensemble:
    """The members run.py started, and its control socket to stop and restart one of them."""

    def __init__(self):
        self.members = MEMBERS

    def hostport(self, mid):
        m = self.member(mid)
        return f"{m['host']}:{m['port']}"

    def member(self, mid):
        for m in self.members:
            if m["id"] == mid:
                return m
        raise KeyError(mid)

    def others(self, mid):
        return ",".join(self.hostport(m["id"]) for m in self.members if m["id"] != mid)

    def four(self, mid, cmd):
        m = self.member(mid)
        return four_letter(m["host"], m["port"], cmd)

    def modes(self):
        """{member id: 'leader' | 'follower' | ...} from each member's srvr."""
        out = {}
        for m in self.members:
            text = self.four(m["id"], "srvr")
            for line in text.splitlines():
                if line.startswith("Mode:"):
                    out[m["id"]] = line.split(":", 1)[1].strip()
        return out

    def member_of_session(self, session_id):
        """The ids of the members whose `cons` lists this session."""
        needle = f"sid=0x{session_id:x}"
        found = []
        for m in self.members:
            try:
                if needle in self.four(m["id"], "cons"):
                    found.append(m["id"])
            except OSError:
                pass
        return found

    def control(self, verb, mid):
        if not CONTROL:
            pytest.skip("no ZK_CONTROL: the ensemble was not started by run.py")
        control(f"{verb} {mid}", path=CONTROL, timeout=120)

    def kill(self, mid):
        self.control("kill", mid)

    def stop(self, mid):
        self.control("stop", mid)

    def start(self, mid):
        self.control("start", mid)


@pytest.fixture(scope="session")
def ensemble():
    return Ensemble()


@pytest.fixture
def hosts(request):
    """This test's connection string: all members, starting with the test's "home" member.

    Clients made with it (randomize_hosts=False) all talk to the home member while it is up,
    so one client's write is visible to another's next read without a sync: ZooKeeper is
    sequentially consistent per client, not across members. The home member differs from test
    to test, so the suite exercises every member.
    """
    i = zlib.crc32(request.node.nodeid.encode()) % len(MEMBERS)
    order = MEMBERS[i:] + MEMBERS[:i]
    return ",".join(f"{m['host']}:{m['port']}" for m in order)


@pytest.fixture
def make_client(hosts):
    """Factory of started KazooClients (stopped and closed after the test)."""
    clients = []
    default_hosts = hosts

    def make(hosts=None, timeout=10.0, start_timeout=15.0, **kwargs):
        kwargs.setdefault("randomize_hosts", False)
        client = KazooClient(hosts=hosts or default_hosts, timeout=timeout, **kwargs)
        clients.append(client)
        client.start(timeout=start_timeout)
        # ZooKeeper is sequentially consistent per client only: a client on another member may
        # not have seen a write another client just made. sync() brings this one up to date
        # with everything written before (the per-test root among others).
        client.sync("/")
        return client

    make.clients = clients
    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk(make_client):
    return make_client()


@pytest.fixture
def zk2(make_client):
    return make_client()


@pytest.fixture
def root(request, make_client):
    """A fresh persistent znode for this test only: /kazoo-compat/<test>-<random>."""
    admin = make_client()
    name = request.node.name.replace("[", "_").replace("]", "_").replace("/", "_")
    path = f"/kazoo-compat/{name}-{uuid.uuid4().hex[:8]}"
    admin.ensure_path(path)
    for c in make_client.clients:  # clients the test made before this fixture ran
        if c is not admin:
            c.sync(path)
    yield path
    try:
        cleaner = admin
        if SUPER_AUTH:
            cleaner = make_client()
            cleaner.add_auth("digest", SUPER_AUTH)
        cleaner.delete(path, recursive=True)
    except NoNodeError:
        pass
    except Exception:
        pass  # best effort: the ensemble is thrown away after the run


class Events:
    """A thread-safe list of watch events (or states) with bounded waits."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate=lambda items: len(items) > 0, timeout=10.0, what="events"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; have {self.items!r}")
                self.cond.wait(left)
            return list(self.items)

    def wait_count(self, n, timeout=10.0):
        return self.wait_for(lambda items: len(items) >= n, timeout, f"{n} events")

    def snapshot(self):
        with self.cond:
            return list(self.items)


@pytest.fixture
def events():
    return Events


# A per-test deadline, so that a server that never answers fails a test instead of hanging
# the run. SIGALRM interrupts the main thread's waits.
class PerTestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise PerTestTimeout(f"test exceeded {TEST_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def pytest_report_header(config):
    return f"target: {TARGET}; hosts: {HOSTS}"
