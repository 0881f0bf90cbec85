#!/usr/bin/env bash
# Eddy's benchmarks (issues 2 and 3); results and how to read them: bench/RESULTS.md.
#
#   bench/run.sh [all|wordcount|sequence|rows|checkpoint|recovery]... [--quick] [--runs N] [--no-build] [--head]
#
# By default it benchmarks target/release/eddy built from the working tree (`cargo build --release
# -p eddy`). With --head it builds a clean copy of the committed HEAD instead (git archive into
# bench/out/src-<commit>, its own target dir bench/out/target-eddy), so that the figures belong to
# a commit even while the working tree holds someone's unfinished changes.
#
# Each benchmark runs N times (5; --quick: 3), its variants interleaved round by round so that
# the ratios compare runs made under the same machine conditions. Raw results go to
# bench/out/<suite>.csv (one row per run; see bench/tools.py for the columns), the logs of every
# run to bench/out/logs/, and the medians to stdout and bench/out/<suite>-summary.md.
# Every run is bounded by `timeout`; this script never leaves a process behind and never writes
# outside bench/out/ (and target/ when it builds).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
LOGS=$OUT/logs
EDDY=$ROOT/target/release/eddy
HAND=$OUT/target/release/handwritten-wordcount
TOOLS="python3 $ROOT/bench/tools.py"
RUN_TIMEOUT=${RUN_TIMEOUT:-600}   # seconds per run
# The machine is shared: before each run, wait up to IDLE_WAIT s for a second in which the CPUs
# are less than IDLE_MAX_BUSY busy (0 = do not wait). Each run records the share of the CPUs
# that other processes used while it ran (others_cpu_share).
IDLE_WAIT=${IDLE_WAIT:-60}
IDLE_MAX_BUSY=${IDLE_MAX_BUSY:-0.25}

# Sizes: each Eddy run lasts about 5-20 s on the 2-core machine of RESULTS.md.
TEXT_MB=${TEXT_MB:-200}
SEQ_KEYS=${SEQ_KEYS:-10000}
SEQ_PER_KEY=${SEQ_PER_KEY:-15000}
ROWS_DISCARD_RECORDS=${ROWS_DISCARD_RECORDS:-6000000000}
ROWS_GROUPBY_RECORDS=${ROWS_GROUPBY_RECORDS:-400000000}
ROWS_KEYS=10000
# Checkpoint overhead on a keyed aggregation without a file sink (rows-groupby, 2 TaskManagers).
CKPT_GROUPBY_RECORDS=${CKPT_GROUPBY_RECORDS:-300000000}
# Recovery: a slow stream (20,000 records/s) whose counting subtask 0 fails every 10,000 records,
# i.e. about once a second; about 14 failures per run.
REC_KEYS=100
REC_PER_KEY=3000
REC_RATE=20000
REC_FAIL_EVERY=10000

RUNS=5
BUILD=1
HEAD_BUILD=0
SUITES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) RUNS=3 ;;
    --runs) RUNS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --head) HEAD_BUILD=1 ;;
    all) SUITES+=(wordcount sequence rows checkpoint recovery) ;;
    wordcount|sequence|rows|checkpoint|recovery) SUITES+=("$1") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1'; usage: bench/run.sh [all|wordcount|sequence|rows|checkpoint|recovery]... [--quick] [--runs N] [--no-build] [--head]" >&2; exit 2 ;;
  esac
  shift
done
[ ${#SUITES[@]} -eq 0 ] && SUITES=(wordcount sequence rows checkpoint recovery)

mkdir -p "$OUT" "$LOGS"
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 1; }

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
if [ "$HEAD_BUILD" = 1 ]; then
  SRC=$OUT/src-$COMMIT
  EDDY=$OUT/target-eddy/release/eddy
  BUILT_FROM="commit $COMMIT (clean copy of HEAD in $SRC)"
else
  SRC=$ROOT
  BUILT_FROM="working tree at commit $COMMIT, $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock | wc -l) files under crates/ or Cargo.* differ from it"
fi

machine() {
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "eddy: $BUILT_FROM"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GB total, " $7 " GB available"}')"
  echo "rustc: $(rustc --version)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ "$BUILD" = 1 ]; then
  echo "== building (cargo may wait for the shared target dir's lock)"
  if [ "$HEAD_BUILD" = 1 ]; then
    if [ ! -d "$SRC" ]; then
      mkdir -p "$SRC.tmp"
      git -C "$ROOT" archive HEAD | tar -x -C "$SRC.tmp"
      mv "$SRC.tmp" "$SRC"
    fi
    (cd "$SRC" && cargo build --release -p eddy --target-dir "$OUT/target-eddy" 2>&1 | tail -1)
  else
    cargo build --release -p eddy 2>&1 | tail -1
  fi
  cargo build --release --manifest-path bench/handwritten-wordcount/Cargo.toml --target-dir "$OUT/target" 2>&1 | tail -1
fi
machine | tee "$OUT/machine.txt"

# run SUITE VARIANT ROUND RECORDS BYTES CHECK_CMD -- COMMAND...
# Runs COMMAND under /usr/bin/time (peak RSS and CPU time of the whole process) and timeout,
# then records it.
# With PTY=1, stderr is a pseudo-terminal and its progress updates are kept with timestamps
# (tools.py pty-run), from which tools.py computes the steady-state rate.
run() {
  local suite=$1 variant=$2 round=$3 records=$4 bytes=$5 check_cmd=$6
  shift 7
  local base="$LOGS/$suite-$variant-$round"
  echo "$*" > "$base.cmd"
  [ "$IDLE_WAIT" -gt 0 ] && $TOOLS wait-idle "$IDLE_MAX_BUSY" "$IDLE_WAIT"
  head -1 /proc/stat > "$base.stat0"
  local rc=0
  local timed=(/usr/bin/time -f '%M %e %U %S' -o "$base.time" timeout -k 10 "$RUN_TIMEOUT" "$@")
  if [ "${PTY:-0}" = 1 ]; then
    $TOOLS pty-run "$base.out" "$base.err" -- "${timed[@]}" || rc=$?
  else
    "${timed[@]}" > "$base.out" 2> "$base.err" || rc=$?
  fi
  head -1 /proc/stat > "$base.stat1"
  local check=""
  if [ "$rc" != 0 ]; then
    check="exit-$rc"
  elif [ -n "$check_cmd" ]; then
    check=$(eval "$check_cmd")
  fi
  $TOOLS record "$OUT/$suite.csv" "$suite" "$variant" "$round" "$records" "$bytes" "$base.out" "$base.time" "$check" "$base.err"
}

# count_lines DIR EXPECTED: "ok" when the committed part files hold EXPECTED lines.
count_lines() {
  local n
  n=$(cat "$1"/part-* 2>/dev/null | wc -l)
  if [ "$n" = "$2" ]; then echo ok; else echo "lines-$n-expected-$2"; fi
}

summarize() {
  local suite=$1
  echo "== $suite: summary ($OUT/$suite.csv)"
  { echo "$(machine)"; echo; $TOOLS summary "$OUT/$suite.csv"; } > "$OUT/$suite-summary.md"
  $TOOLS summary "$OUT/$suite.csv"
}

fresh() { rm -f "$OUT/$1.csv" "$LOGS/$1"-*; }

suite_wordcount() {
  fresh wordcount
  local text=$OUT/text-${TEXT_MB}mb.txt
  [ -f "$text" ] || python3 bench/gen-text.py --mb "$TEXT_MB" --out "$text"
  local bytes words
  bytes=$(stat -c %s "$text")
  words=$("$HAND" "$text" --hasher fx | python3 -c 'import json,sys; print(json.load(sys.stdin)["words"])')
  echo "== wordcount: $text ($bytes bytes, $words words), $RUNS rounds"
  for i in $(seq 1 "$RUNS"); do
    run wordcount handwritten-std "$i" "$words" "$bytes" "" -- "$HAND" "$text" --hasher std
    run wordcount handwritten-fx "$i" "$words" "$bytes" "" -- "$HAND" "$text" --hasher fx
    for v in "p1:1:2" "p2:2:2" "p2-1tm:2:1"; do
      IFS=: read -r name p tms <<< "$v"
      rm -rf "$OUT/wc-out"
      run wordcount "eddy-$name" "$i" "$words" "$bytes" "count_lines $OUT/wc-out $words" -- \
        "$EDDY" local word-count --input "$text" --output "$OUT/wc-out" -p "$p" --taskmanagers "$tms" --json
      rm -rf "$OUT/wc-out"
    done
  done
  summarize wordcount
}

SEQ_RECORDS=$((SEQ_KEYS * SEQ_PER_KEY))

seq_run() { # SUITE VARIANT ROUND [-D ...]
  local suite=$1 variant=$2 round=$3
  shift 3
  rm -rf "$OUT/seq-out" "$OUT/ckpt"
  run "$suite" "$variant" "$round" "$SEQ_RECORDS" 0 "count_lines $OUT/seq-out $SEQ_RECORDS" -- \
    "$EDDY" local sequence --keys "$SEQ_KEYS" --per-key "$SEQ_PER_KEY" --output "$OUT/seq-out" \
    -p 2 --taskmanagers 2 --slots 1 "$@" --json
  rm -rf "$OUT/seq-out" "$OUT/ckpt"
}

suite_sequence() {
  fresh sequence
  echo "== sequence: $SEQ_KEYS keys x $SEQ_PER_KEY = $SEQ_RECORDS records, unthrottled, p=2 on 2 TaskManagers x 1 slot, $RUNS runs"
  for i in $(seq 1 "$RUNS"); do seq_run sequence unthrottled-p2 "$i"; done
  summarize sequence
}

suite_rows() {
  fresh rows
  echo "== rows: p=2 on 1 TaskManager x 2 slots, $ROWS_KEYS keys, $RUNS rounds"
  for i in $(seq 1 "$RUNS"); do
    run rows rows-discard "$i" "$ROWS_DISCARD_RECORDS" 0 "" -- \
      "$EDDY" local rows-discard --records "$ROWS_DISCARD_RECORDS" --keys "$ROWS_KEYS" -p 2 --taskmanagers 1 --slots 2 --json
    run rows rows-groupby "$i" "$ROWS_GROUPBY_RECORDS" 0 "" -- \
      "$EDDY" local rows-groupby --records "$ROWS_GROUPBY_RECORDS" --keys "$ROWS_KEYS" -p 2 --taskmanagers 1 --slots 2 --json
  done
  summarize rows
}

suite_checkpoint() {
  fresh checkpoint
  echo "== checkpoint: sequence ($SEQ_RECORDS records, p=2, 2 TaskManagers) with checkpointing off / 1 s / 100 ms, $RUNS rounds"
  # On a terminal `eddy local` redraws its progress every 200 ms; heartbeats (which carry the
  # record counters to the JobManager) every 200 ms too, in all three variants alike.
  # The groupby-* variants (rows-groupby, same topology, discarding sink) tell the cost of the
  # exactly-once file sink's fsync at each barrier apart from the rest of checkpointing.
  local gb=(local rows-groupby --records "$CKPT_GROUPBY_RECORDS" --keys "$ROWS_KEYS" -p 2 --taskmanagers 2 --slots 1
            -D heartbeat.interval=200ms --json)
  for i in $(seq 1 "$RUNS"); do
    PTY=1 seq_run checkpoint off "$i" -D heartbeat.interval=200ms
    for iv in 1s 100ms; do
      PTY=1 seq_run checkpoint "$iv" "$i" -D heartbeat.interval=200ms \
        -D "execution.checkpointing.interval=$iv" -D "execution.checkpointing.dir=$OUT/ckpt"
    done
    PTY=1 run checkpoint groupby-off "$i" "$CKPT_GROUPBY_RECORDS" 0 "" -- "$EDDY" "${gb[@]}"
    rm -rf "$OUT/ckpt"
    PTY=1 run checkpoint groupby-1s "$i" "$CKPT_GROUPBY_RECORDS" 0 "" -- "$EDDY" "${gb[@]}" \
      -D execution.checkpointing.interval=1s -D "execution.checkpointing.dir=$OUT/ckpt"
    rm -rf "$OUT/ckpt"
  done
  summarize checkpoint
  for v in 1s 100ms groupby-1s; do
    echo "- checkpoint duration (trigger -> complete), $v, all rounds: $($TOOLS ckpt-durations "$LOGS"/checkpoint-"$v"-*.err)" \
      | tee -a "$OUT/checkpoint-summary.md"
  done
}

suite_recovery() {
  fresh recovery
  local records=$((REC_KEYS * REC_PER_KEY))
  echo "== recovery: sequence $REC_KEYS x $REC_PER_KEY at $REC_RATE records/s, subtask 0 fails every $REC_FAIL_EVERY records, restart delay 0, $RUNS runs"
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$OUT/rec-out" "$OUT/ckpt"
    EDDY_LOG=info run recovery fail-every-"$REC_FAIL_EVERY" "$i" "$records" 0 "count_lines $OUT/rec-out $records" -- \
      "$EDDY" local sequence --keys "$REC_KEYS" --per-key "$REC_PER_KEY" --rate "$REC_RATE" \
      --fail-every "$REC_FAIL_EVERY" --fail-subtask 0 --output "$OUT/rec-out" -p 2 --taskmanagers 2 --slots 1 \
      -D eddy.test-hooks.enabled=true -D execution.checkpointing.interval=1s -D "execution.checkpointing.dir=$OUT/ckpt" \
      -D restart-strategy.type=fixed-delay -D restart-strategy.fixed-delay.attempts=unlimited \
      -D restart-strategy.fixed-delay.delay=0ms --json
    rm -rf "$OUT/rec-out" "$OUT/ckpt"
  done
  summarize recovery
  echo "- recovery (task failed -> job RUNNING again), all runs: $($TOOLS recovery "$LOGS"/recovery-*.err)" \
    | tee -a "$OUT/recovery-summary.md"
}

for s in "${SUITES[@]}"; do "suite_$s"; done
