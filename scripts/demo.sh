#!/usr/bin/env bash
# The main demo: a session cluster on this host survives a TaskManager being killed.
#
# Builds Eddy, starts the cluster of conf/ (one JobManager, three TaskManagers), runs the
# exactly-once witness job `sequence` at parallelism 4, kills one TaskManager with SIGKILL while
# it runs, and shows the job recovering from its latest checkpoint, finishing, and the witness
# holding: every (key, seq) exactly once, count == seq.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-100}
PER_KEY=${PER_KEY:-5000}
RATE=${RATE:-20000}
echo "== building eddy (release)"
cargo build --release -q -p eddy
EDDY=target/release/eddy
OUT=$(mktemp -d /tmp/eddy-demo.XXXXXX)
echo "== starting the cluster of conf/ (logs in ./log)"
$EDDY cluster start --conf conf/
trap '$EDDY cluster stop --conf conf/ >/dev/null' EXIT
$EDDY cluster status --conf conf/
echo "== running sequence --keys $KEYS --per-key $PER_KEY --rate $RATE -p 4 into $OUT/seq"
$EDDY run sequence --keys "$KEYS" --per-key "$PER_KEY" --rate "$RATE" --output "$OUT/seq" -p 4 &
RUN=$!
sleep 4
VICTIM=$(head -1 log/eddy-taskmanager-1.pid)
echo
echo "== kill -9 TaskManager pid $VICTIM"
kill -9 "$VICTIM"
wait $RUN
echo "== checking the exactly-once witness"
python3 scripts/witness.py "$OUT/seq" "$KEYS" "$PER_KEY"
