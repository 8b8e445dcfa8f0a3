#!/bin/bash
# A follower catching up through a snapshot of a large tree (docs/performance.md, "A
# follower catching up through a snapshot"): three zkraft-server processes
# (tests/kazoo/run.py --serve, fsync on); one follower is stopped (SIGSTOP) while the other
# two take SECS seconds of creates of 100-byte znodes over the wire (64 connections x 16 in
# flight), so the leader compacts its log past it; then the follower is continued
# (SIGCONT). Printed: the tree's size, the time until the follower holds as many znodes
# as the leader, its RSS before, at its peak during the catch-up and after, and what its
# log says of the snapshot.
#
#   cargo build --release -p zkraft-server && cargo bench --bench vs_zookeeper --no-run
#   ./dev setup                                  # the Python environment run.py needs
#   benches/snapshot_catchup.sh [SECS]           # default 32: about 1,000,000 znodes here
set -u
SECS=${1:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
W=$(mktemp -d "${TMPDIR:-/tmp}/zkraft-catchup.XXXXXX")
SERVE=""
FOLLOWER=""
cleanup() {
    [ -n "$FOLLOWER" ] && kill -CONT "$FOLLOWER" 2>/dev/null
    exec {fd}>&- 2>/dev/null
    if [ -n "$SERVE" ]; then
        for _ in $(seq 1 100); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$SERVE" 2>/dev/null
        wait "$SERVE" 2>/dev/null
    fi
    rm -rf "$W"
}
trap cleanup EXIT
srvr() { python3 "$ROOT/benches/four_letter_word.py" "$1" srvr; }
count() { srvr "$1" 2>/dev/null | sed -n 's/^Node count: //p'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }

mkfifo "$W/stdin"
ZKRAFT_SERVER="$ROOT/target/release/zkraft-server" ZKRAFT_ARGS="--max-client-cnxns 0" \
    target/kazoo-venv/bin/python tests/kazoo/run.py --target zkraft --serve --workdir "$W/data" \
    <"$W/stdin" >"$W/serve.log" 2>&1 &
SERVE=$!
exec {fd}>"$W/stdin" # run.py's stdin: closing it stops the ensemble
for _ in $(seq 1 120); do
    grep -q '^ZK_HOSTS=' "$W/serve.log" && break
    sleep 0.5
done
grep -q '^ZK_HOSTS=' "$W/serve.log" || { echo "the ensemble did not come up:"; cat "$W/serve.log"; exit 1; }
LEADER_ADDR=""
OTHERS=()
while read -r _ addr _ pid _ log; do
    mode=$(srvr "$addr" | sed -n 's/^Mode: //p')
    if [ "$mode" = leader ]; then
        LEADER_ADDR=$addr
        LEADER_PID=$pid
        OTHERS+=("$addr")
    elif [ -z "$FOLLOWER" ]; then
        FOLLOWER=$pid
        FOLLOWER_ADDR=$addr
        FOLLOWER_LOG=$log
    else
        OTHERS+=("$addr")
    fi
done < <(sed -n 's/^ZK_MEMBER=//p' "$W/serve.log")
[ -n "$LEADER_ADDR" ] && [ -n "$FOLLOWER" ] || { echo "no leader or no follower:"; cat "$W/serve.log"; exit 1; }
echo "follower $FOLLOWER_ADDR (pid $FOLLOWER): RSS $(rss "$FOLLOWER") kB, stopped"
kill -STOP "$FOLLOWER"
HOSTS=$(IFS=,; echo "${OTHERS[*]}")
cargo bench --quiet --bench vs_zookeeper -- --hosts "$HOSTS" --scenarios create --pipelined \
    --conns 64 --window 16 --secs "$SECS" --prewarm 1 --warmup 1 | grep -E '^create '
WANT=$(count "$LEADER_ADDR")
echo "leader $LEADER_ADDR: $WANT znodes, RSS $(rss "$LEADER_PID") kB"
( while kill -0 "$FOLLOWER" 2>/dev/null; do rss "$FOLLOWER" >>"$W/rss"; sleep 0.2; done ) &
MON=$!
START=$(date +%s.%N)
kill -CONT "$FOLLOWER"
GOT=""
for _ in $(seq 1 1500); do
    GOT=$(count "$FOLLOWER_ADDR")
    [ "$GOT" = "$WANT" ] && break
    sleep 0.2
done
DONE=$(date +%s.%N)
kill "$MON" 2>/dev/null
echo "follower: $GOT znodes after $(python3 -c "print(round($DONE - $START, 2))") s; RSS peak $(sort -n "$W/rss" | tail -1) kB, now $(rss "$FOLLOWER") kB"
echo "its log on the snapshot:"
grep -i "snapshot" "$FOLLOWER_LOG" | tail -n 6 | cut -c1-220
[ "$GOT" = "$WANT" ]
