#!/usr/bin/env bash
# Checkpoint storage benchmark (issue 12): checkpoint duration to S3 (moto_server on 127.0.0.1)
# vs a local directory, and restore time after one task failure with and without task-local
# recovery. Release build (`cargo build --release -p eddy`); `eddy local sequence` at p=2.
#
#   bench/storage.sh [REPS]        (EDDY=path/to/eddy, KEYS=..., EDDY_VENV=... to override)
#
# Per configuration and repetition: the job runs ~12 s with a checkpoint every second; after 6 s a
# trigger file makes the counting operator fail once (--fail-on-file: a task failure, not a
# TaskManager loss). Checkpoint duration = the JobManager's "completed checkpoint N (B bytes, D ms
# from trigger)"; restore time = from the injected failure's log line to the last "restored ..."
# line of the restart (restart delay 0). Prints medians over all checkpoints / repetitions.
set -euo pipefail
REPS=${1:-3}
cd "$(dirname "$0")/.."
EDDY=${EDDY:-${CARGO_TARGET_DIR:-target}/release/eddy}
VENV=${EDDY_VENV:-/var/tmp/eddy-venv}
KEYS=${KEYS:-100000}
PER_KEY=${PER_KEY:-40}
RATE=${RATE:-330000}
[ -x "$EDDY" ] || { echo "error: $EDDY not found: cargo build --release -p eddy" >&2; exit 2; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill -9 $moto 2>/dev/null || true; wait $moto 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
curl -sf -X PUT "http://127.0.0.1:$port/bench" >/dev/null
S3_KEYS=(-D "s3.endpoint=http://127.0.0.1:$port" -D s3.region=us-east-1 -D s3.access-key=bench
  -D s3.secret-key=bench -D s3.path.style.access=true)

run() { # label dir local-recovery rep
  local label=$1 dir=$2 lr=$3 rep=$4 log="$work/$1-$4.log" trig="$work/$1-$4.fail"
  EDDY_LOG=info "$EDDY" local sequence --keys "$KEYS" --per-key "$PER_KEY" --rate "$RATE" \
    --output "$work/out-$label-$rep" --fail-on-file "$trig" -p 2 \
    -D eddy.test-hooks.enabled=true -D execution.checkpointing.interval=1s \
    -D restart-strategy.fixed-delay.delay=0ms -D "state.checkpoints.dir=$dir" \
    -D "state.backend.local-recovery=$lr" -D "taskmanager.state.local.root-dirs=$work/local" \
    "${S3_KEYS[@]}" >/dev/null 2>"$log" &
  local pid=$!
  sleep 6
  touch "$trig"
  wait $pid
  echo "$log"
}

report() { # label logs...
  python3 - "$@" <<'EOF'
import re, statistics, sys
from datetime import datetime
label, logs = sys.argv[1], sys.argv[2:]
ts = lambda l: datetime.fromisoformat(l.split()[0].replace("Z", "+00:00"))
durs, sizes, restores, storage, local = [], [], [], [], []
for f in logs:
    lines = re.sub(r"\x1b\[[0-9;]*m", "", open(f).read()).splitlines()
    fail = None
    for l in lines:
        m = re.search(r"completed checkpoint \d+ \((\d+) bytes, (\d+) ms from trigger\)", l)
        if m:
            sizes.append(int(m.group(1))); durs.append(int(m.group(2)))
        if fail is None and "injected failure" in l:
            fail = ts(l)
    rest = [l for l in lines if "bytes of state files from checkpoint storage" in l]
    if fail and rest:
        restores.append((ts(rest[-1]) - fail).total_seconds() * 1000)
        for l in rest:
            a, b = [int(w) for w in l.rsplit(": ", 1)[1].split() if w.isdigit()][:2]
            storage.append(a); local.append(b)
med = lambda v: statistics.median(v) if v else float("nan")
print(f"| {label} | {len(durs)} | {med(sizes)/1e6:.1f} | {med(durs):.0f} | {len(restores)} | "
      f"{med(restores):.0f} | {sum(storage)/max(len(restores),1)/1e6:.1f} | {sum(local)/max(len(restores),1)/1e6:.1f} |")
EOF
}

echo "| storage, local recovery | checkpoints | median size MB | median checkpoint ms | restores | median restore ms | MB read from storage per restore | MB read locally per restore |"
echo "|---|---|---|---|---|---|---|---|"
for cfg in "local-dir|$work/chk|false" "local-dir+LR|$work/chk|true" "s3|s3://bench/chk|false" "s3+LR|s3://bench/chk|true"; do
  IFS='|' read -r label dir lr <<<"$cfg"
  logs=()
  for r in $(seq "$REPS"); do logs+=("$(run "$label" "$dir" "$lr" "$r")"); done
  report "$label" "${logs[@]}"
done
