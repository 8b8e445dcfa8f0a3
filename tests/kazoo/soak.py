"""The kill -9 soak: members killed under a write load, cycle after cycle, and nothing lost.

Runs inside run.py's three-member ensemble (`./dev soak`, and a few cycles in `./dev test`):

    run.py --target zkraft --exec python tests/kazoo/soak.py [--cycles 50] [--seed S]

Kazoo writers (each its own session, connected to every member) create sequential znodes
under the cycle's own parent, one at a time, each with a value no other write has. A create
that fails on a lost connection or a timeout is of unknown outcome; writers never retry
one (a retried create would legitimately make a second znode). Each cycle:

1. writes for a while;
2. kills (SIGKILL, by run.py, by pid) one random member, or two, or — every fifth cycle —
   all three, at once, while the writes go on;
3. restarts them from their directories, together, and writes on;
4. pauses the writers and checks, on every member (reading through that member alone,
   after `sync`):
   - every acknowledged value is there;
   - no value is there twice;
   - nothing is there that no writer wrote;
5. and that the members' digests (the admin port's `hash`) agree, once their applied zxids
   do.

The choices of a cycle come from `random.Random(seed + cycle)`: a failing run prints the
seed that replays its choices. At the end every earlier cycle's parent is checked again.
Prints one line per cycle and a summary (with --out, also as JSON).
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import control  # noqa: E402

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, OperationTimeoutError, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

ROOT = "/soak"
RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5}
UNKNOWN = (ConnectionLoss, OperationTimeoutError, SessionExpiredError, KazooTimeoutError)
SETTLE_TIMEOUT = 60.0


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Writer(threading.Thread):
    """Creates sequential znodes under the current parent, one at a time."""

    def __init__(self, wid, hosts):
        super().__init__(daemon=True)
        self.wid = wid
        self.client = KazooClient(hosts=hosts, timeout=10.0,
                                  connection_retry=KazooRetry(**RETRY), command_retry=None)
        self.client.start(timeout=60)
        self.parent = None
        self.go = threading.Event()  # set: write
        self.idle = threading.Event()  # set by the writer while it does not write
        self.quit = False
        self.n = 0
        self.acked = {}  # parent -> [values]
        self.unknown = {}
        self.errors = []

    def run(self):
        while not self.quit:
            if not self.go.is_set():
                self.idle.set()
                self.go.wait(0.1)
                continue
            self.idle.clear()
            parent = self.parent
            value = f"w{self.wid}-{self.n}"
            self.n += 1
            try:
                self.client.create(f"{parent}/e-", value.encode(), sequence=True)
                self.acked.setdefault(parent, []).append(value)
            except UNKNOWN:
                self.unknown.setdefault(parent, []).append(value)
                time.sleep(0.01)
            except Exception as e:  # anything else is a finding
                self.errors.append(f"{value}: {e!r}")
        self.idle.set()

    def pause(self):
        self.go.clear()
        if not self.idle.wait(60):
            raise SystemExit(f"soak: writer {self.wid} did not pause in 60 s")


def at_once(lines):
    """Sends the harness these commands together (a connection each, served concurrently:
    kills land at once, and members started together find their quorum); exits on any
    error."""
    errors = []

    def send(line):
        try:
            control(line)
        except Exception as e:  # noqa: BLE001 - reported below, from the main thread
            errors.append(f"{line}: {e}")

    threads = [threading.Thread(target=send, args=(line,)) for line in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"soak: {'; '.join(errors)}")


def read_values(hosts, parent, attempts=5):
    """Every child's value under `parent`, read through `hosts` alone after a sync; the
    whole read is tried again (a bounded number of times) when the connection drops."""
    c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=KazooRetry(**RETRY))
    c.start(timeout=60)
    try:
        for attempt in range(attempts):
            try:
                c.sync(parent)
                names = c.get_children(parent)
                gets = [c.get_async(f"{parent}/{n}") for n in names]
                return [g.get(timeout=60)[0].decode() for g in gets]
            except UNKNOWN:
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.5)
    finally:
        c.stop()
        c.close()


def digests(admin):
    out = []
    for a in admin:
        with urllib.request.urlopen(f"http://{a}/commands/hash", timeout=5) as r:
            d = json.load(r)["digests"][0]
        out.append((d["zxid"], d["digest"]))
    return out


def check(members, parent, acked, unknown):
    """Problems found under `parent` on every member."""
    problems = []
    for m in members:
        values = read_values(f"{m['host']}:{m['port']}", parent)
        seen = set()
        for v in values:
            if v in seen:
                problems.append(f"member {m['id']}: {parent}: {v} is there twice")
            seen.add(v)
        for v in acked:
            if v not in seen:
                problems.append(f"member {m['id']}: {parent}: acknowledged {v} is missing")
        for v in seen - acked - unknown:
            problems.append(f"member {m['id']}: {parent}: {v} was never written")
    return problems


def settle_digests(admin):
    """Waits until every member applied the same zxid, then compares their digests."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        try:
            ds = digests(admin)
        except OSError:
            ds = None
        if ds and len({z for z, _ in ds}) == 1:
            return [] if len({d for _, d in ds}) == 1 else [f"digests differ at one zxid: {ds}"]
        if time.monotonic() > deadline:
            return [f"members did not reach one zxid in {SETTLE_TIMEOUT:.0f}s: {ds}"]
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--write-secs", type=float, default=1.5)
    parser.add_argument("--out", help="write the summary as JSON here")
    args = parser.parse_args()
    hosts = os.environ["ZK_HOSTS"]
    with open(os.environ["ZK_MEMBERS"]) as f:
        members = json.load(f)
    admin = [a for a in os.environ.get("ZK_ADMIN", "").split(",") if a]
    log(f"seed {args.seed}, {args.cycles} cycles, {args.writers} writers")
    setup = KazooClient(hosts=hosts, timeout=10.0, connection_retry=KazooRetry(**RETRY))
    setup.start(timeout=60)
    setup.ensure_path(ROOT)
    writers = [Writer(i, hosts) for i in range(args.writers)]
    for w in writers:
        w.start()
    totals = {"cycles": 0, "kills": 0, "all_killed": 0, "acked": 0, "unknown": 0,
              "lost": 0, "twice": 0, "digest_mismatches": 0}
    problems = []
    parents = []
    started = time.monotonic()
    try:
        for cycle in range(args.cycles):
            rnd = random.Random(args.seed + cycle)
            parent = f"{ROOT}/c{cycle}"
            setup.create(parent)
            parents.append(parent)
            for w in writers:
                w.parent = parent
                w.go.set()
            time.sleep(args.write_secs * rnd.uniform(0.5, 1.5))
            ids = [m["id"] for m in members]
            if cycle % 5 == 4:
                victims = ids
            else:
                victims = rnd.sample(ids, rnd.choice([1, 1, 2]))
            at_once([f"kill {v}" for v in victims])
            time.sleep(rnd.uniform(0.0, 1.0))
            at_once([f"start {v}" for v in victims])
            time.sleep(args.write_secs * rnd.uniform(0.5, 1.5))
            for w in writers:
                w.pause()
            acked = {v for w in writers for v in w.acked.get(parent, [])}
            unknown = {v for w in writers for v in w.unknown.get(parent, [])}
            found = check(members, parent, acked, unknown)
            if admin:
                found += settle_digests(admin)
            errors = [e for w in writers for e in w.errors]
            found += errors
            for w in writers:
                w.errors.clear()
            totals["cycles"] += 1
            totals["kills"] += len(victims)
            totals["all_killed"] += len(victims) == len(ids)
            totals["acked"] += len(acked)
            totals["unknown"] += len(unknown)
            totals["lost"] += sum("is missing" in p for p in found)
            totals["twice"] += sum("twice" in p for p in found)
            totals["digest_mismatches"] += sum("digests differ" in p for p in found)
            log(f"cycle {cycle}: killed {victims}, {len(acked)} acknowledged, "
                f"{len(unknown)} unknown, {len(found)} problems")
            problems += found
            if found:
                break
        if not problems:
            log("checking every cycle's znodes again")
            for w in writers:
                w.pause()
            for parent in parents:
                acked = {v for w in writers for v in w.acked.get(parent, [])}
                unknown = {v for w in writers for v in w.unknown.get(parent, [])}
                problems += check(members, parent, acked, unknown)
    finally:
        for w in writers:
            w.quit = True
            w.go.set()
        for w in writers:
            w.join(timeout=30)
            w.client.stop()
            w.client.close()
        setup.stop()
        setup.close()
    totals["seconds"] = round(time.monotonic() - started)
    totals["seed"] = args.seed
    log(f"summary: {json.dumps(totals)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(totals, f, indent=1)
    if problems:
        for p in problems[:30]:
            log(f"PROBLEM: {p}")
        log(f"replay with --seed {args.seed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
