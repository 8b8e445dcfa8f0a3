#!/usr/bin/env python3
"""How long writes stop when the leader is killed: kazoo writers on a 3-member ensemble.

Runs under tests/kazoo/run.py, which starts the ensemble and gives ZK_HOSTS, ZK_MEMBERS,
ZK_CONTROL and ZK_TARGET (`./dev bench --failover` runs it against ZooKeeper 3.8 and zkraft):

    python3 tests/kazoo/run.py --target zkraft --exec python3 benches/failover.py [--cycles 5]

Each member hosts --writers-per-member kazoo clients (their member first in the host list,
the others after it), each setting its own znode in a loop, one write at a time. A cycle
finds the leader (four-letter word `srvr`), kills it with SIGKILL (run.py's `kill N`, which
answers once the process is gone), waits until every writer has written again, restarts the member (`start N`) and lets the ensemble
settle. Per cycle it reports:

  gap     the longest stretch without a successful write by any writer, from a second before
          the kill until every writer is back: how long the ensemble could not take a write;
  all     from the kill until every writer has written again (the killed member's clients
          have reconnected elsewhere: kazoo's retry policy counts here).

At the end it reads every writer's znode back: each holds at least the last value whose write
was acknowledged (nothing acknowledged was lost). Prints one line per cycle, then medians and
worsts, and with --out writes them as JSON; `--compare ZK.json ZKRAFT.json` prints two such
files side by side.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5}


def four_letter(port, cmd, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return out.decode(errors="replace")
                out += chunk
    except OSError:
        return ""


def control(cmd, timeout=90):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(os.environ["ZK_CONTROL"])
        s.sendall((cmd + "\n").encode())
        reply = s.recv(256).decode().strip()
    if reply != "ok":
        raise SystemExit(f"failover: `{cmd}` answered {reply!r}")


def find_leader(members, deadline):
    while time.monotonic() < deadline:
        for m in members:
            if "Mode: leader" in four_letter(m["port"], "srvr"):
                return m["id"]
        time.sleep(0.05)
    raise SystemExit("failover: no member says it leads")


class Writer(threading.Thread):
    """Sets its own znode to 1, 2, 3, ... one write at a time; records each success."""

    def __init__(self, hosts, path, stop):
        super().__init__(daemon=True)
        self.client = KazooClient(
            hosts=hosts,
            timeout=10.0,
            randomize_hosts=False,
            connection_retry=KazooRetry(**RETRY),
            command_retry=None,
        )
        self.path = path
        self.stop_flag = stop
        self.lock = threading.Lock()
        self.successes = []  # monotonic completion times
        self.acked = 0  # the last value acknowledged
        self.failures = 0

    def run(self):
        value = self.acked
        while not self.stop_flag.is_set():
            value += 1
            try:
                self.client.set(self.path, str(value).encode())
            except Exception:  # connection loss, timeout, session moved: try again
                self.failures += 1
                time.sleep(0.005)
                continue
            now = time.monotonic()
            with self.lock:
                self.successes.append(now)
                self.acked = value

    def successes_between(self, a, b):
        with self.lock:
            return [t for t in self.successes if a <= t <= b]


def compare(zookeeper_json, zkraft_json):
    """Prints the two runs' medians and worsts side by side, with zkraft's ratio."""
    with open(zookeeper_json) as f:
        zk = json.load(f)
    with open(zkraft_json) as f:
        zr = json.load(f)
    print(f"\n| kill -9 of the leader ({len(zr['cycles'])} cycles) | ZooKeeper 3.8 | zkraft | zkraft / ZooKeeper |")
    print("|---|---|---|---|")
    for key, what in [
        ("gap_median_s", "writes stopped, median"),
        ("gap_worst_s", "writes stopped, worst"),
        ("all_median_s", "every writer back, median"),
        ("all_worst_s", "every writer back, worst"),
    ]:
        ratio = zr[key] / zk[key] if zk[key] > 0 else float("nan")
        print(f"| {what} | {zk[key]:.3f} s | {zr[key]:.3f} s | {ratio:.2f}× |")
    print(f"| writes acknowledged / lost | {zk['writes']} / {zk['lost']} | {zr['writes']} / {zr['lost']} | |")
    return 0 if zk["lost"] == 0 and zr["lost"] == 0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", nargs=2, metavar=("ZOOKEEPER_JSON", "ZKRAFT_JSON"),
                        help="print two --out files side by side, and exit")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--writers-per-member", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after a restart")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    target = os.environ.get("ZK_TARGET", "?")
    with open(os.environ["ZK_MEMBERS"]) as f:
        members = json.load(f)
    addr = {m["id"]: f"{m['host']}:{m['port']}" for m in members}

    setup = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=10.0)
    setup.start(timeout=30)
    root = f"/failover-{os.getpid()}"
    setup.ensure_path(root)
    stop = threading.Event()
    writers = []
    for m in members:
        hosts = ",".join([addr[m["id"]]] + [a for i, a in addr.items() if i != m["id"]])
        for w in range(args.writers_per_member):
            path = f"{root}/m{m['id']}-w{w}"
            setup.create(path, b"0")
            writers.append(Writer(hosts, path, stop))
    setup.stop()
    setup.close()
    for w in writers:
        w.client.start(timeout=30)
        w.start()

    cycles = []
    try:
        for cycle in range(1, args.cycles + 1):
            time.sleep(1.0)
            leader = find_leader(members, time.monotonic() + 30)
            asked_at = time.monotonic()
            control(f"kill {leader}")  # answers once the process is gone
            killed_at = time.monotonic()
            deadline = killed_at + 60
            while time.monotonic() < deadline:
                if all(w.successes_between(killed_at, float("inf")) for w in writers):
                    break
                time.sleep(0.02)
            else:
                raise SystemExit(f"failover: cycle {cycle}: some writer never wrote again")
            back = max(min(w.successes_between(killed_at, float("inf"))) for w in writers)
            # Every success from a second before the kill was asked for until every writer
            # is back: the longest stretch between two of them.
            times = sorted(t for w in writers for t in w.successes_between(asked_at - 1.0, back))
            gap = max(b - a for a, b in zip(times, times[1:]))
            result = {"cycle": cycle, "leader": leader, "gap_s": gap, "all_s": back - killed_at}
            cycles.append(result)
            print(
                f"{target} cycle {cycle}: killed leader {leader}; writes stopped for {gap:.3f} s, "
                f"every writer back after {back - killed_at:.3f} s",
                flush=True,
            )
            control(f"start {leader}")
            time.sleep(args.settle)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=30)

    check = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=10.0)
    check.start(timeout=30)
    lost = []
    for w in writers:
        check.sync(w.path)
        value = int(check.get(w.path)[0])
        if value < w.acked:
            lost.append((w.path, w.acked, value))
        w.client.stop()
        w.client.close()
    check.stop()
    check.close()

    gaps = [c["gap_s"] for c in cycles]
    alls = [c["all_s"] for c in cycles]
    summary = {
        "target": target,
        "cycles": cycles,
        "gap_median_s": statistics.median(gaps),
        "gap_worst_s": max(gaps),
        "all_median_s": statistics.median(alls),
        "all_worst_s": max(alls),
        "writes": sum(len(w.successes) for w in writers),
        "lost": len(lost),
    }
    print(
        f"{target}: writes stopped for median {summary['gap_median_s']:.3f} s "
        f"(worst {summary['gap_worst_s']:.3f} s); every writer back after median "
        f"{summary['all_median_s']:.3f} s (worst {summary['all_worst_s']:.3f} s); "
        f"{summary['writes']} writes acknowledged, {len(lost)} lost",
        flush=True,
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    if lost:
        print(f"failover: acknowledged writes lost: {lost}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
