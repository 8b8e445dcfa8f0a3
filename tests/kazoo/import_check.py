"""Moves a real ZooKeeper 3.8 ensemble's data into zkraft and checks every znode.

Run by `./dev import-check` (and, smaller, by `./dev test`) inside run.py's ZooKeeper
ensemble:

    ZK_JVM_ARGS=-Dzookeeper.snapCount=20000 run.py --target zookeeper \\
        --exec python tests/kazoo/import_check.py [--znodes N]

1. A kazoo load on ZooKeeper: N znodes with data of many sizes, digest and read-only ACLs,
   sequential znodes, containers (some emptied and reaped), TTL znodes (some expired and
   reaped), ephemerals of a session that stays open and of one that closes, set_data and
   set_acls, deletes, multis that succeed and one that fails. ZooKeeper takes snapshots
   during the load (snapCount), and its leader is restarted halfway (a new epoch), so the
   state is a snapshot plus the logs after it.
2. Every znode's data, stat and ACL is read from ZooKeeper; then ZooKeeper is stopped.
3. `zkraft-server import` writes member 1's directory from the ZooKeeper member with the
   most transactions; three `zkraft-server` processes start: member 1 from it, members 2
   and 3 empty with --join (they catch up by snapshot).
4. The open ZooKeeper session resumes on zkraft (same id and password), every znode read
   through member 3 is compared with ZooKeeper's, field by field, and the session's
   ephemerals go when it closes.
5. Damaged copies of the ZooKeeper directory: a corrupt newest snapshot (an older one is
   used), every snapshot corrupt, a truncated log, a missing log: each import fails or
   falls back with the file and offset named, and leaves nothing behind.

Only the processes this script starts are signalled, by pid. Exit code 0 when all holds.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.security import make_digest_acl, ACL, Id, Permissions

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from run import control, free_ports, super_digest  # noqa: E402
import zkwire  # noqa: E402

ROOT = "/import"
BATCH = 2000  # requests in flight at once
TTL_LONG_MS = 3_600_000
TTL_SHORT_MS = 500


def log(msg):
    print(f"[import_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def four(hostport, cmd, timeout=5.0):
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(cmd.encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def client(hosts, auth, **kw):
    c = KazooClient(hosts=hosts, timeout=30.0, connection_retry={"max_tries": -1, "delay": 0.2,
                                                                  "max_delay": 1.0}, **kw)
    c.start(timeout=60)
    user, password = auth.split(":", 1)
    c.add_auth("digest", f"{user}:{password}")
    return c


def wait_all(results, tolerate=()):
    """Waits for async results; returns how many failed with a tolerated exception."""
    failed = 0
    for r in results:
        try:
            r.get(timeout=120)
        except tolerate:
            failed += 1
    return failed


def load(zk, hosts, auth, n, leader_of):
    """The load; returns the (session id, password) of the session left open and the
    paths of its ephemerals."""
    rnd = random.Random(20261204)
    digest = make_digest_acl("alice", "secret", read=True, write=True)
    read_only = ACL(Permissions.READ, Id("world", "anyone"))
    admin_only = make_digest_acl("bob", "pw", all=True)
    zk.ensure_path(ROOT)
    for p in ("seq", "ttl", "eph", "multi"):
        zk.create(f"{ROOT}/{p}")
    dirs = max(1, n // 1000)
    for d in range(dirs):
        zk.create(f"{ROOT}/d{d}")
    keeper = client(hosts, auth)  # stays open: its ephemerals come over
    leaver = client(hosts, auth)  # closes: its ephemerals go
    pending = []
    lost = 0
    restarted = False

    def flush(force=False):
        nonlocal pending, lost
        if force or len(pending) >= BATCH:
            lost += wait_all(pending, tolerate=(KazooException,))
            pending = []

    for i in range(n):
        if not restarted and i >= n // 2:
            flush(force=True)
            leader = leader_of()
            log(f"restarting ZooKeeper's leader (member {leader}) at {i} znodes: a new epoch")
            control(f"stop {leader}")
            control(f"start {leader}")
            restarted = True
        kind = i % 20
        size = rnd.choice([0, 1, 10, 100, 300, 1000])
        value = rnd.randbytes(size)
        path = f"{ROOT}/d{i % dirs}/n{i}"
        if kind in (1, 7):
            pending.append(zk.create_async(path, value, acl=[digest, admin_only]))
        elif kind == 2:
            pending.append(zk.create_async(path, value, acl=[read_only, admin_only]))
        elif kind == 3:
            pending.append(zk.create_async(f"{ROOT}/seq/item-", value, sequence=True))
        elif kind == 6 and i % 100 == 6:
            owner = keeper if i % 200 == 6 else leaver
            pending.append(owner.create_async(f"{ROOT}/eph/e{i}", value, ephemeral=True))
        elif kind == 8 and i % 100 == 8:
            t = zk.transaction()
            t.create(f"{ROOT}/multi/m{i}", value)
            t.create(f"{ROOT}/multi/m{i}/a", b"a")
            t.set_data(f"{ROOT}/multi", value)
            pending.append(t.commit_async())
        else:
            pending.append(zk.create_async(path, value))
        flush()
    flush(force=True)
    log(f"created; {lost} requests were lost in the leader's restart")
    kinds(hosts, n, dirs, rnd)
    # Changes after the creates: versions, ACL versions, deletes (parents' cversion and
    # pzxid), a failed multi (an error transaction).
    paths = [f"{ROOT}/d{i % dirs}/n{i}" for i in range(n) if i % 20 in (0, 9, 10, 11, 12)]
    for k, p in enumerate(paths):
        if k % 3 == 0:
            pending.append(zk.set_async(p, b"changed"))
        if k % 9 == 0:
            pending.append(zk.set_async(p, b"changed twice"))
        if k % 13 == 0:
            pending.append(zk.set_acls_async(p, [digest, admin_only]))
        if k % 11 == 5:
            pending.append(zk.delete_async(p))
        flush()
    flush(force=True)
    t = zk.transaction()
    t.create(f"{ROOT}/multi/never", b"")
    t.check(f"{ROOT}/multi", 12345)
    results = t.commit()
    assert any(isinstance(r, Exception) for r in results), results
    leaver.stop()
    leaver.close()
    log("waiting for ZooKeeper to reap the emptied containers and expired TTL znodes")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        zk.sync(ROOT)
        ttl_left = [c for c in zk.get_children(f"{ROOT}/ttl") if int(c[1:]) % 80 == 0]
        containers_left = [
            c for d in range(dirs) for c in zk.get_children(f"{ROOT}/d{d}")
            if c.startswith("c") and int(c[1:]) % 80 == 0
        ]
        if not ttl_left and not containers_left:
            break
        time.sleep(0.5)
    else:
        raise SystemExit("ZooKeeper did not reap the containers and TTL znodes in 60 s")
    eph = sorted(keeper.get_children(f"{ROOT}/eph"))
    return keeper, eph


def kinds(hosts, n, dirs, rnd):
    """What kazoo cannot create, through the raw wire client: containers (half of them
    emptied, so ZooKeeper reaps them), TTL znodes (half of them expiring, reaped too) and
    znodes whose data is null."""
    host, port = hosts.split(",")[0].rsplit(":", 1)
    raw = zkwire.RawClient(host, int(port), timeout_ms=30000)
    try:
        for i in range(0, n, 40):
            d = f"{ROOT}/d{i % dirs}"
            raw.create(f"{d}/c{i}", rnd.randbytes(rnd.choice([0, 10, 100])), zkwire.CONTAINER)
            raw.create(f"{d}/c{i}/child", b"x")
            if i % 80 == 0:
                raw.delete(f"{d}/c{i}/child")
            ttl = TTL_SHORT_MS if i % 80 == 0 else TTL_LONG_MS
            raw.create(f"{ROOT}/ttl/t{i}", rnd.randbytes(10), zkwire.PERSISTENT_WITH_TTL, ttl=ttl)
            raw.create(f"{d}/null{i}", None)
    finally:
        raw.close()


def dump(zk):
    """{path: (data, stat tuple, acl list)} of every znode but /zookeeper/config."""
    paths, frontier = [], ["/"]
    while frontier:
        paths.extend(frontier)
        results = [(p, zk.get_children_async(p)) for p in frontier]
        frontier = []
        for p, r in results:
            for c in r.get(timeout=120):
                frontier.append(("" if p == "/" else p) + "/" + c)
    paths = [p for p in paths if p != "/zookeeper/config"]
    out = {}
    for i in range(0, len(paths), BATCH):
        chunk = paths[i:i + BATCH]
        gets = [(p, zk.get_async(p), zk.get_acls_async(p)) for p in chunk]
        for p, g, a in gets:
            data, stat = g.get(timeout=120)
            acl, _ = a.get(timeout=120)
            out[p] = (data, tuple(stat), sorted((x.perms, x.id.scheme, x.id.id) for x in acl))
    return out


def leader_of_zookeeper(members):
    for m in members:
        try:
            text = four(f"{m['host']}:{m['port']}", "srvr")
        except OSError:
            continue
        if "Mode: leader" in text:
            return m["id"]
    raise SystemExit("no ZooKeeper member says it leads")


def run_import(binary, peers, zk_dir, out, check=True):
    cmd = [binary, "import", "--zk-data-dir", zk_dir, "--data-dir", out, "--id", "1",
           "--peers", peers]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise SystemExit(f"import of {zk_dir} failed:\n{r.stderr}")
    return r


class Zkraft:
    """Three zkraft-server processes this script started (and stops, by pid)."""

    def __init__(self, binary, workdir, auth):
        self.procs = {}
        ports = free_ports(6)
        self.client_ports, raft_ports = ports[:3], ports[3:]
        self.peers = ",".join(f"{i + 1}=127.0.0.1:{raft_ports[i]}" for i in range(3))
        self.binary, self.workdir, self.auth = binary, workdir, auth

    def start(self, mid, data_dir, join):
        user, password = self.auth.split(":", 1)
        argv = [self.binary, "--id", str(mid), "--peers", self.peers, "--data-dir", data_dir,
                "--client-addr", f"127.0.0.1:{self.client_ports[mid - 1]}",
                "--super-digest", super_digest(user, password), "--4lw-whitelist", "*",
                *(["--join"] if join else [])]
        logf = open(os.path.join(self.workdir, f"zkraft{mid}.log"), "w")
        self.procs[mid] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)

    def hosts(self, mids=(1, 2, 3)):
        return ",".join(f"127.0.0.1:{self.client_ports[m - 1]}" for m in mids)

    def wait_serving(self, timeout=120):
        deadline = time.monotonic() + timeout
        for mid in self.procs:
            while True:
                try:
                    if "Zxid" in four(self.hosts([mid]), "srvr", timeout=2):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or self.procs[mid].poll() is not None:
                    raise SystemExit(f"zkraft member {mid} does not serve")
                time.sleep(0.2)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def compare(expected, actual):
    problems = []
    for p, want in expected.items():
        got = actual.get(p)
        if got is None:
            problems.append(f"{p}: missing in zkraft")
        elif got != want:
            problems.append(f"{p}: zookeeper {want!r}\n    zkraft    {got!r}")
    for p in actual:
        if p not in expected:
            problems.append(f"{p}: only in zkraft")
    return problems


def damaged_copies(binary, peers, zk_dir, scratch):
    """Each damage gives its clear error (or a logged fallback) and leaves nothing."""
    v2 = os.path.join(zk_dir, "version-2")
    names = os.listdir(v2)
    snaps = sorted((n for n in names if re.fullmatch(r"snapshot\.[0-9a-f]+", n)),
                   key=lambda n: int(n.split(".")[1], 16))
    logs = sorted((n for n in names if re.fullmatch(r"log\.[0-9a-f]+", n)),
                  key=lambda n: int(n.split(".")[1], 16))
    log(f"damaged copies of a directory of {len(snaps)} snapshots and {len(logs)} logs")
    assert len(snaps) >= 2 and len(logs) >= 2, (snaps, logs)

    def copy(name):
        d = os.path.join(scratch, name)
        shutil.copytree(zk_dir, d)
        return d, os.path.join(d, "version-2")

    def flip(path, at):
        with open(path, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x55]))

    def refused(d, wants):
        out = os.path.join(scratch, "out-" + os.path.basename(d))
        r = run_import(binary, peers, d, out, check=False)
        assert r.returncode != 0, f"import of {d} should fail:\n{r.stdout}"
        for w in wants:
            assert re.search(w, r.stderr), f"{w!r} not in:\n{r.stderr}"
        assert not os.path.exists(out), f"{out} left behind"
        assert not any(n.startswith(".out-") for n in os.listdir(scratch)), os.listdir(scratch)
        log(f"  refused as it should: {r.stderr.strip().splitlines()[-1][:200]}")

    # The newest snapshot corrupt in its middle: an older one is used instead.
    d, dv2 = copy("corrupt-newest")
    newest = os.path.join(dv2, snaps[-1])
    flip(newest, os.path.getsize(newest) // 2)
    out = os.path.join(scratch, "out-fallback")
    r = run_import(binary, peers, d, out)
    assert f"skipped {newest}" in r.stderr and "at offset" in r.stderr, r.stderr
    assert f"snapshot: {os.path.join(dv2, snaps[-2])}" in r.stdout, r.stdout
    log(f"  fell back as it should: {r.stderr.strip().splitlines()[0][:200]}")
    # Every snapshot corrupt: no valid snapshot, each named with its offset.
    d, dv2 = copy("corrupt-all")
    for s in snaps:
        p = os.path.join(dv2, s)
        flip(p, os.path.getsize(p) - 20)
    refused(d, [r"no valid snapshot", re.escape(snaps[-1]) + r": at offset \d+"])
    # The last log cut inside a record.
    d, dv2 = copy("truncated-log")
    last = os.path.join(dv2, logs[-1])
    with open(last, "rb") as f:
        data = f.read()
    end = len(data.rstrip(b"\0"))  # the preallocated zeros go first
    with open(last, "r+b") as f:
        f.truncate(end - 7)
    refused(d, [re.escape(logs[-1]) + r": at offset \d+: truncated", "--drop-torn-tail"])
    # A log missing in the middle, the older snapshot only: a gap.
    d, dv2 = copy("missing-log")
    for s in snaps[1:]:
        os.remove(os.path.join(dv2, s))
    os.remove(os.path.join(dv2, logs[len(logs) // 2]))
    refused(d, [r"gap in the transaction logs", r"at offset \d+"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--znodes", type=int, default=100_000)
    parser.add_argument("--zkraft-server",
                        default=os.environ.get("ZKRAFT_SERVER")
                        or os.path.join(REPO, "target", "debug", "zkraft-server"))
    args = parser.parse_args()
    binary = os.path.abspath(args.zkraft_server)
    hosts, auth = os.environ["ZK_HOSTS"], os.environ["ZK_SUPER_AUTH"]
    with open(os.environ["ZK_MEMBERS"]) as f:
        members = json.load(f)
    zk_workdir = os.path.dirname(os.environ["ZK_MEMBERS"])
    scratch = tempfile.mkdtemp(prefix="zkraft-import-")
    zkraft = None
    try:
        started = time.monotonic()
        zk = client(hosts, auth)
        keeper, eph = load(zk, hosts, auth, args.znodes, lambda: leader_of_zookeeper(members))
        zk.sync("/")
        log(f"loaded in {time.monotonic() - started:.0f}s; reading every znode from ZooKeeper")
        expected = dump(zk)
        log(f"{len(expected)} znodes read; the open session 0x{keeper.client_id[0]:x} "
            f"holds {len(eph)} ephemerals")
        session = keeper.client_id
        zk.stop()
        zk.close()
        # ZooKeeper stops with the session still open (no close reaches it).
        for m in members:
            control(f"stop {m['id']}")
        keeper.stop()
        keeper.close()

        zkraft = Zkraft(binary, scratch, auth)
        # The member with the most transactions holds every acknowledged one.
        best = None
        for m in members:
            out = os.path.join(scratch, f"probe{m['id']}")
            r = run_import(binary, zkraft.peers, os.path.join(zk_workdir, f"member{m['id']}"),
                           out)
            last = int(re.search(r"last zxid: (0x[0-9a-f]+)", r.stdout).group(1), 16)
            log(f"ZooKeeper member {m['id']}: last zxid {last:#x}")
            if best is None or last > best[0]:
                best = (last, m["id"], out, r.stdout)
        last, mid, member1, report = best
        log(f"importing ZooKeeper member {mid}:\n{report.strip()}")
        assert last >> 32 >= 2, f"one epoch only ({last:#x}): the leader restart made none"
        assert len(re.findall(r"^log: ", report, re.M)) >= 1, report
        assert "transactions replayed: 0\n" not in report, "the logs after the snapshot matter"
        zkraft.start(1, member1, join=False)
        for i in (2, 3):
            zkraft.start(i, os.path.join(scratch, f"zkraft{i}"), join=True)
        zkraft.wait_serving()
        log("zkraft serves; resuming the ZooKeeper session on it")
        resumed = KazooClient(hosts=zkraft.hosts([2]), client_id=session, timeout=30.0)
        resumed.start(timeout=60)
        assert resumed.client_id[0] == session[0], (resumed.client_id, session)
        assert sorted(resumed.get_children(f"{ROOT}/eph")) == eph
        z3 = client(zkraft.hosts([3]), auth)
        z3.sync("/")
        actual = dump(z3)
        problems = compare(expected, actual)
        if problems:
            raise SystemExit(f"{len(problems)} znodes differ:\n" + "\n".join(problems[:20]))
        log(f"all {len(expected)} znodes equal: data, stat and ACL, through member 3")
        resumed.stop()  # closes the session: its ephemerals go
        resumed.close()
        z3.sync("/")
        assert z3.get_children(f"{ROOT}/eph") == [], z3.get_children(f"{ROOT}/eph")
        z3.stop()
        z3.close()
        damaged_copies(binary, zkraft.peers, os.path.join(zk_workdir, f"member{mid}"), scratch)
        log(f"import check passed in {time.monotonic() - started:.0f}s")
        return 0
    finally:
        if zkraft:
            zkraft.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
