#!/bin/bash
# The tree's memory and restart time on one zkraft-server member (docs/performance.md,
# "The tree in RocksDB"): creates of 100-byte znodes over the wire from 64 connections
# with 16 requests in flight each (benches/vs_zookeeper.rs's `create` scenario) for SECS
# seconds, then the server's RSS, the data directory's size, and the time from a restart
# to serving (`srvr` answered with a zxid) with the RSS after it.
#
#   cargo build --release -p zkraft-server && cargo bench --bench vs_zookeeper --no-run
#   benches/tree_memory.sh [SECS] [zkraft-server flags...]      # e.g. 40 --cache-mb 4
#   BIN=/path/to/other/zkraft-server benches/tree_memory.sh 40  # another build, same load
#   ROUNDS=10 DATA_BYTES=1024 benches/tree_memory.sh 30         # the load 10 times over, 1 KiB
#
# ROUNDS (default 1) runs the load that many times over, one after the other, and prints
# after each the create rate it had, the node count, the RSS and the directory's size: the
# rate as the tree grows. DATA_BYTES (default 100) is each znode's data.
set -u
SECS=${1:-40}
ROUNDS=${ROUNDS:-1}
DATA_BYTES=${DATA_BYTES:-100}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/zkraft-server}
W=$(mktemp -d "${TMPDIR:-/tmp}/zkraft-tree-memory.XXXXXX")
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PP=$(port)
CP=$(port)
serve() {
    "$BIN" --id 1 --peers "1=127.0.0.1:$PP" --data-dir "$W/d" --client-addr "127.0.0.1:$CP" \
        --max-client-cnxns 0 --log-level warning "$@" 2>>"$W/log" &
    PID=$!
}
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }
srvr() { python3 "$ROOT/benches/four_letter_word.py" "127.0.0.1:$CP" srvr; }
serve "$@"
trap 'kill $PID 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 100); do srvr >/dev/null 2>&1 && break; sleep 0.1; done
( while kill -0 "$PID" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$PID/status" >>"$W/rss"; sleep 1; done ) &
MON=$!
for r in $(seq 1 "$ROUNDS"); do
    (cd "$ROOT" && cargo bench --quiet --bench vs_zookeeper -- --hosts "127.0.0.1:$CP" \
        --scenarios create --pipelined --conns 64 --window 16 --secs "$SECS" --prewarm 1 --warmup 1 \
        --data-bytes "$DATA_BYTES" | grep -E '^create ' | sed "s/^/round $r: /")
    echo "round $r: $(srvr | grep 'Node count'); RSS $(rss), peak so far $(sort -n "$W/rss" | tail -1) kB; data directory $(du -sh "$W/d" | cut -f1)"
done
echo "RSS after the load: $(rss); peak $(sort -n "$W/rss" | tail -1) kB"
kill "$PID"; wait "$PID" 2>/dev/null
kill "$MON" 2>/dev/null
START=$(date +%s.%N)
serve "$@"
for _ in $(seq 1 1200); do
    srvr 2>/dev/null | grep -q Zxid && break
    sleep 0.025
done
echo "restart to serving: $(python3 -c "import time; print(round(time.time() - $START, 2))") s"
sleep 1
echo "RSS after the restart: $(rss)"
