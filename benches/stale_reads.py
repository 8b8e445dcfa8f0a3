#!/usr/bin/env python3
"""Stale reads on another member right after a write: zkraft against Apache ZooKeeper 3.8.

    target/kazoo-venv/bin/python benches/stale_reads.py                      # both, 200 rounds
    target/kazoo-venv/bin/python benches/stale_reads.py --target zkraft --rounds 500
    target/kazoo-venv/bin/python benches/stale_reads.py --hosts 127.0.0.1:2181,127.0.0.1:2182,...

For each target a 3-member ensemble is started on loopback with the kazoo suite's harness
(`tests/kazoo/run.py --target T --serve`, fsync on for both: ZooKeeper's forceSync=yes,
zkraft's synced raft log) and stopped afterwards (by closing run.py's standard input; run.py
stops only the members it started). zkraft runs the release build of zkraft-server
(target/release/zkraft-server, or --zkraft-server / ZKRAFT_SERVER): build it first with
`cargo build --release -p zkraft-server`. With --hosts, an ensemble already running is
measured instead (every member must answer the `srvr` four-letter word).

Two kazoo clients, each connected to one member only: A writes, B reads. Per round, A does
set_data(path, i) and waits for the answer, then B at once does get(path); the round is stale
when B's value is older than i. For a stale round B then polls (a get after another, bounded
by --catch-up-ms) until it sees i; the time from A's answer to that read is the catch-up
time. Two pairings are measured, roles found with `srvr`:

    A = the leader,      B = a follower
    A = a follower,      B = the other follower

Printed: per target and pairing the stale count, the catch-up times of the stale rounds
(median and largest), and the write's and the read's own latency (median); then both targets
side by side. `--repeat K` runs it all K times, the targets alternating, and adds the
counts up (fairer when the machine is busy at times). This is a benchmark, not a test: it is
not part of ./dev test, and it says nothing about correctness (ZooKeeper allows these stale
reads; `sync` before the read closes the window, on both).

`--sync` has B call sync(path) before each read: ZooKeeper's way to read what was written
elsewhere; no round should then be stale (the get's latency then includes the sync's).

`--fsync-delay-ms D` gives both ensembles a slower disk: every fsync / fdatasync of their
processes takes D ms longer, one at a time across the three members (benches/slow_fsync.c,
an LD_PRELOAD library built with `cc` into target/stale-reads/), as on a machine whose disk
flushes slowly. The issue's figures came from such a machine; this one's flushes take
about 0.1 ms.

Every wait is bounded (each request by --request-timeout, each pairing by --max-seconds);
only 127.0.0.1 is used; exit status 0, or 1 when an ensemble could not be started or
measured.
"""

import argparse
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RUN_PY = os.path.join(REPO, "tests", "kazoo", "run.py")
SLOW_FSYNC_C = os.path.join(HERE, "slow_fsync.c")

START_TIMEOUT = 180.0  # seconds for run.py to print the ensemble's addresses
STOP_TIMEOUT = 30.0  # seconds for run.py to stop its members once its stdin is closed
WARMUP_ROUNDS = 20  # unmeasured rounds per pairing (connections, JIT, caches)
ARGS = None  # the command line, once parsed
PAIRINGS = [("leader", "follower"), ("follower", "follower")]


def say(msg):
    print(f"[stale_reads {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def four_letter(hostport, word, timeout=3.0):
    """Sends a four-letter word to a 127.0.0.1 member and reads the answer until it closes."""
    host, port = hostport.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def mode(hostport):
    """'leader', 'follower' or 'standalone' as the member's `srvr` reports, or None."""
    try:
        answer = four_letter(hostport, "srvr")
    except OSError:
        return None
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def slow_disk(args):
    """Environment for processes whose fsync / fdatasync take --fsync-delay-ms longer, one at
    a time among all of them (benches/slow_fsync.c, built here with cc)."""
    out = os.path.join(REPO, "target", "stale-reads")
    os.makedirs(out, exist_ok=True)
    lib = os.path.join(out, "slow_fsync.so")
    if not os.path.exists(lib) or os.path.getmtime(lib) < os.path.getmtime(SLOW_FSYNC_C):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise RuntimeError("--fsync-delay-ms needs a C compiler (cc) to build slow_fsync.so")
        subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", "-o", lib, SLOW_FSYNC_C, "-ldl", "-lpthread"],
            check=True,
            timeout=120,
        )
    preload = " ".join(x for x in [lib, os.environ.get("LD_PRELOAD", "")] if x)
    return {
        "LD_PRELOAD": preload,
        "SLOW_FSYNC_US": str(int(args.fsync_delay_ms * 1000)),
        "SLOW_FSYNC_LOCK": os.path.join(out, "disk.lock"),
    }


class Ensemble:
    """A 3-member ensemble started by tests/kazoo/run.py --serve (stopped by closing its stdin)."""

    def __init__(self, target, args):
        self.target = target
        self.proc = None
        self.hosts = []
        self.output = []
        env = dict(os.environ)
        if target == "zkraft":
            server = (
                args.zkraft_server
                or os.environ.get("ZKRAFT_SERVER")
                or os.path.join(REPO, "target", "release", "zkraft-server")
            )
            if not os.path.exists(server):
                raise RuntimeError(
                    f"no zkraft-server at {server}: cargo build --release -p zkraft-server"
                )
            env["ZKRAFT_SERVER"] = os.path.abspath(server)
        if args.fsync_delay_ms > 0:
            env.update(slow_disk(args))
        os.makedirs(args.workdir, exist_ok=True)
        cmd = [
            sys.executable,
            RUN_PY,
            "--target",
            target,
            "--serve",
            "--workdir",
            args.workdir,
        ]
        say(f"{target}: starting the ensemble ({' '.join(cmd[1:])})")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
        )
        lines = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        members = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(members) < 3:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"{target}: no ensemble after {START_TIMEOUT:.0f}s\n" + self.tail())
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise RuntimeError(f"{target}: run.py ended before serving\n" + self.tail())
            self.output.append(line)
            if line.startswith("ZK_MEMBER="):
                # ZK_MEMBER=ID 127.0.0.1:PORT pid PID log PATH
                mid, hostport = line[len("ZK_MEMBER="):].split()[:2]
                members[int(mid)] = hostport
        self.hosts = [members[k] for k in sorted(members)]
        # (The pump thread keeps reading run.py's output, so run.py never blocks on the pipe.)

    def tail(self, n=30):
        return "\n".join(self.output[-n:])

    def stop(self):
        """Closes run.py's stdin (it stops its members) and waits; TERM, then KILL, by pid."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            p.stdin.close()
        except OSError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and p.poll() is None:
                say(f"{self.target}: run.py (pid {p.pid}) still running: sending {sig.name}")
                p.send_signal(sig)
            try:
                p.wait(timeout=STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        say(f"{self.target}: ensemble stopped")


def client(hostport, args):
    from kazoo.client import KazooClient

    c = KazooClient(
        hosts=hostport,
        timeout=10.0,
        connection_retry={"max_tries": 3, "delay": 0.2, "max_delay": 1.0},
    )
    c.start(timeout=args.request_timeout)
    return c


def roles(hosts, wait=30.0):
    """{hostport: mode} once exactly one member reports being the leader."""
    deadline = time.monotonic() + wait
    while True:
        modes = {h: mode(h) for h in hosts}
        if list(modes.values()).count("leader") == 1 and all(modes.values()):
            return modes
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no single leader among {modes}")
        time.sleep(0.2)


def pick(modes, a_role):
    """(A, B): A with role a_role, B a follower other than A."""
    leader = [h for h, m in modes.items() if m == "leader"][0]
    followers = sorted(h for h, m in modes.items() if m == "follower")
    if len(followers) < 2:
        raise RuntimeError(f"two followers needed: {modes}")
    return (leader, followers[0]) if a_role == "leader" else (followers[0], followers[1])


def measure(target, a, b, label, args):
    """One pairing: rounds of A's set then B's get. Returns a result dict."""
    t = args.request_timeout
    ca = client(a, args)
    try:
        cb = client(b, args)
    except Exception:
        ca.stop()
        ca.close()
        raise
    path = f"/stale-reads-{os.getpid()}-{label}"
    stale, catch_up, never = 0, [], 0
    set_lat, get_lat = [], []
    rounds = 0
    try:
        ca.create_async(path, b"-1").get(timeout=t)
        # B must know the znode before the first measured round.
        cb.sync_async(path).get(timeout=t)
        for i in range(-WARMUP_ROUNDS, 0):
            ca.set_async(path, str(i).encode()).get(timeout=t)
            cb.get_async(path).get(timeout=t)
        cb.sync_async(path).get(timeout=t)
        ca.set_async(path, b"0").get(timeout=t)
        cb.sync_async(path).get(timeout=t)
        deadline = time.monotonic() + args.max_seconds
        for i in range(1, args.rounds + 1):
            if time.monotonic() >= deadline:
                say(f"{target} {label}: --max-seconds reached after {rounds} rounds")
                break
            want = str(i).encode()
            t0 = time.perf_counter()
            ca.set_async(path, want).get(timeout=t)
            t1 = time.perf_counter()
            if args.sync:
                cb.sync_async(path).get(timeout=t)
            data, _ = cb.get_async(path).get(timeout=t)
            t2 = time.perf_counter()
            rounds += 1
            set_lat.append(t1 - t0)
            get_lat.append(t2 - t1)
            if int(data) >= i:
                continue
            stale += 1
            limit = t1 + args.catch_up_ms / 1000.0
            for _ in range(args.catch_up_polls):
                data, _ = cb.get_async(path).get(timeout=t)
                now = time.perf_counter()
                if int(data) >= i:
                    catch_up.append(now - t1)
                    break
                if now >= limit:
                    never += 1
                    break
            else:
                never += 1
    finally:
        try:
            ca.delete_async(path).get(timeout=t)
        except Exception:
            pass
        for c in (ca, cb):
            try:
                c.stop()
                c.close()
            except Exception:
                pass
    return {
        "target": target,
        "label": label,
        "a": a,
        "b": b,
        "rounds": rounds,
        "stale": stale,
        "catch_up": catch_up,
        "never": never,
        "set_p50": statistics.median(set_lat) if set_lat else float("nan"),
        "get_p50": statistics.median(get_lat) if get_lat else float("nan"),
    }


def merge(a, b):
    """Two results of one pairing (repeats) as one: counts added, samples pooled."""
    n = a["rounds"] + b["rounds"]
    w = lambda k: (a[k] * a["rounds"] + b[k] * b["rounds"]) / n if n else float("nan")
    return dict(
        a,
        a="*" if a["a"] != b["a"] else a["a"],
        b="*" if a["b"] != b["b"] else a["b"],
        label=b["label"] if "roles changed" in b["label"] else a["label"],
        rounds=n,
        stale=a["stale"] + b["stale"],
        catch_up=a["catch_up"] + b["catch_up"],
        never=a["never"] + b["never"],
        set_p50=w("set_p50"),  # (a mean of the repeats' medians)
        get_p50=w("get_p50"),
    )


def ms(x):
    return f"{x * 1000:.2f}"


def describe(r):
    cu = r["catch_up"]
    return {
        "stale": f"{r['stale']}/{r['rounds']}",
        "stale %": f"{100.0 * r['stale'] / r['rounds']:.1f}" if r["rounds"] else "-",
        "catch-up p50 ms": ms(statistics.median(cu)) if cu else "-",
        "catch-up max ms": ms(max(cu)) if cu else "-",
        "not caught up": str(r["never"]),
        "set p50 ms": ms(r["set_p50"]),
        "read p50 ms": ms(r["get_p50"]),
    }


def table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def print_target(target, results):
    cols = list(describe(results[0]).keys()) if results else []
    rows = []
    for r in results:
        d = describe(r)
        rows.append([r["label"], f"{r['a']} -> {r['b']}"] + [d[c] for c in cols])
    how = "sync then a read" if ARGS.sync else "a read (no sync)"
    print(f"\n{target}: write on A, then at once {how} on B")
    print(table(rows, ["A -> B", "members"] + cols))


def run_target(target, args):
    ens = None
    try:
        if args.hosts:
            hosts = args.hosts.split(",")
        else:
            ens = Ensemble(target, args)
            hosts = ens.hosts
        results = []
        for a_role, _ in PAIRINGS:
            modes = roles(hosts)
            a, b = pick(modes, a_role)
            label = f"{a_role}->follower"
            say(f"{target}: {label}: A {a} ({modes[a]}), B {b} ({modes[b]}), {args.rounds} rounds")
            r = measure(target, a, b, label, args)
            after = roles(hosts)
            if after[a] != modes[a] or after[b] != modes[b]:
                say(f"{target}: {label}: roles changed during the run ({modes} -> {after})")
                r["label"] += " (roles changed!)"
            results.append(r)
        return results
    finally:
        if ens is not None:
            ens.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target", choices=["zkraft", "zookeeper", "both"], default="both",
        help="which server (default both, ZooKeeper first)",
    )
    parser.add_argument("--rounds", type=int, default=200, help="measured rounds per pairing")
    parser.add_argument(
        "--hosts", help="measure this running ensemble (H:P,H:P,H:P) instead of starting one"
    )
    parser.add_argument("--zkraft-server", help="zkraft-server binary (default: the release build)")
    parser.add_argument(
        "--workdir", default=os.path.join(REPO, "target", "bench-data"),
        help="where run.py puts the members' data (default target/bench-data: on disk, not tmpfs)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="run everything this many times, the targets alternating (fairer on a busy machine)",
    )
    parser.add_argument(
        "--fsync-delay-ms", type=float, default=0.0,
        help="make every fsync of the ensembles' processes this much slower, one at a time "
        "(a slow disk; default 0: the machine's own)",
    )
    parser.add_argument(
        "--sync", action="store_true",
        help="B calls sync(path) before each read (then no round should be stale)",
    )
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="seconds per pairing at most")
    parser.add_argument(
        "--catch-up-ms", type=float, default=2000.0,
        help="how long a stale round polls B before counting it 'not caught up'",
    )
    parser.add_argument("--catch-up-polls", type=int, default=100000, help="most polls per stale round")
    args = parser.parse_args()
    global ARGS
    ARGS = args
    if args.rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    if args.hosts and args.fsync_delay_ms > 0:
        parser.error("--fsync-delay-ms applies to the ensembles this script starts, not --hosts")
    if args.hosts and args.target == "both":
        parser.error("--hosts measures one ensemble: give --target zkraft or zookeeper")
    for h in (args.hosts or "").split(","):
        if h and not h.startswith("127.0.0.1:"):
            parser.error(f"--hosts: 127.0.0.1 only, not {h}")

    targets = ["zookeeper", "zkraft"] if args.target == "both" else [args.target]
    disk = f"every fsync {args.fsync_delay_ms:g} ms slower, one at a time" if args.fsync_delay_ms else "the machine's own"
    print(f"stale reads: {args.rounds} rounds per pairing, {args.repeat} repeat(s), disk: {disk}")
    everything = {}
    code = 0
    for rep in range(args.repeat):
        for target in targets:
            if args.repeat > 1:
                say(f"repeat {rep + 1} of {args.repeat}: {target}")
            try:
                results = run_target(target, args)
            except Exception as e:  # one target failing still reports the other
                say(f"{target}: failed: {e}")
                code = 1
                continue
            if args.repeat > 1:
                print_target(f"{target} (repeat {rep + 1})", results)
            if target in everything:
                everything[target] = [merge(a, b) for a, b in zip(everything[target], results)]
            else:
                everything[target] = results
    for target in targets:
        if target in everything:
            total = f" (all {args.repeat} repeats)" if args.repeat > 1 else ""
            print_target(target + total, everything[target])
    if len(everything) == 2:
        print("\nside by side: stale rounds (catch-up p50 / max ms)")
        rows = []
        for i, (a_role, _) in enumerate(PAIRINGS):
            row = [f"{a_role}->follower"]
            for target in targets:
                d = describe(everything[target][i])
                row.append(
                    f"{d['stale']} = {d['stale %']}% ({d['catch-up p50 ms']} / {d['catch-up max ms']})"
                )
            rows.append(row)
        print(table(rows, ["A -> B"] + targets))
    return code


if __name__ == "__main__":
    sys.exit(main())
