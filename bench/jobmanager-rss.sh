#!/usr/bin/env bash
# RSS of a long-running JobManager across many short jobs (issue 8 item 9): a session cluster of
# one JobManager and one TaskManager on 127.0.0.1, N `sequence` jobs run one after another to the
# end (`eddy run`, no -d), the JobManager's and TaskManager's VmRSS sampled from /proc after
# 0, 10, 100, 250, 500, ... jobs. Everything is stopped at the end (also on failure).
#
#   bench/jobmanager-rss.sh [JOBS]        (default 1000; EDDY_BIN=path to the binary,
#                                          default target/release/eddy or $CARGO_TARGET_DIR's)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${1:-1000}"
BIN="${EDDY_BIN:-${CARGO_TARGET_DIR:-target}/release/eddy}"
[ -x "$BIN" ] || { echo "error: no eddy binary at $BIN (cargo build --release -p eddy, or set EDDY_BIN)" >&2; exit 2; }
DIR="$(mktemp -d /tmp/eddy-rss-XXXXXX)"
mkdir -p "$DIR/conf" "$DIR/log"
read -r REST RPC < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
cat > "$DIR/conf/config.yaml" <<EOF
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $RPC
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $REST
taskmanager.host: 127.0.0.1
taskmanager.numberOfTaskSlots: 4
execution.checkpointing.interval: 100 ms
execution.checkpointing.dir: $DIR/checkpoints
env.log.dir: $DIR/log
EOF
echo "127.0.0.1:$REST" > "$DIR/conf/masters"
echo "127.0.0.1" > "$DIR/conf/workers"
cleanup() { "$BIN" cluster stop --conf "$DIR/conf" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" cluster start --conf "$DIR/conf" >/dev/null
JM_PID=$(head -1 "$DIR"/log/eddy-jobmanager-0.pid)
TM_PID=$(head -1 "$(ls "$DIR"/log/eddy-taskmanager-*.pid | head -1)")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $BIN, $JOBS jobs (sequence --keys 2 --per-key 50 -p 2, checkpoints every 100 ms)"
printf '%6s %12s %10s %12s %10s\n' jobs jm_rss_kib jm_threads tm_rss_kib tm_threads
sample() { printf '%6s %12s %10s %12s %10s\n' "$1" "$(rss "$JM_PID")" "$(threads "$JM_PID")" "$(rss "$TM_PID")" "$(threads "$TM_PID")"; }
sample 0
for i in $(seq 1 "$JOBS"); do
  # A fresh output directory per job (the sink refuses one holding another job's parts).
  "$BIN" run sequence --keys 2 --per-key 50 --output "$DIR/out-$i" -p 2 -m "127.0.0.1:$REST" --conf "$DIR/conf" >/dev/null 2>"$DIR/run.err" \
    || { echo "error: job $i failed: $(tail -1 "$DIR/run.err")" >&2; exit 1; }
  rm -rf "$DIR/out-$i"
  case "$i" in 10|100|250|500|750|1000|1500|2000|5000) sample "$i" ;; esac
done
case "$JOBS" in 10|100|250|500|750|1000|1500|2000|5000) ;; *) sample "$JOBS" ;; esac
echo "listed jobs: $("$BIN" list --all -m "127.0.0.1:$REST" --conf "$DIR/conf" 2>/dev/null | grep -c FINISHED || true)"
