#!/usr/bin/env bash
# Word count against the COST bar (issue 16): the hand-written single-threaded count and one or
# more eddy binaries (e.g. before/after a change) on the same input, rounds interleaved, medians
# and ratios of the same run. Results: bench/RESULTS.md, "Word count past COST".
#
#   bench/wordcount-cost.sh --input TEXT --hand PATH [--runs R] [-p P] LABEL=EDDY_BINARY...
#
# Throughput = input bytes / the job's duration_ms (--json summary) for Eddy, / the elapsed_ms the
# hand-written program reports for itself (as in bench/run.sh). Every Eddy run's committed output
# must hold one line per word occurrence (checked against the hand-written total). Writes only
# under bench/out/wc-cost/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5
P=2
INPUT=
HAND=
BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --input) INPUT=$2; shift ;;
    --hand) HAND=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    -p) P=$2; shift ;;
    *=*) BINS+=("$1") ;;
    *) echo "unknown argument '$1'; usage: bench/wordcount-cost.sh --input TEXT --hand PATH [--runs R] [-p P] LABEL=EDDY_BINARY..." >&2; exit 2 ;;
  esac
  shift
done
[ -f "$INPUT" ] && [ -x "$HAND" ] && [ ${#BINS[@]} -gt 0 ] || { echo "need --input, --hand and at least one LABEL=EDDY_BINARY" >&2; exit 2; }
OUT=bench/out/wc-cost
mkdir -p "$OUT"
CSV=$OUT/runs.csv
BYTES=$(stat -c %s "$INPUT")
echo "variant,run,mb_per_s,duration_ms,cpu_s" > "$CSV"
WORDS=
for r in $(seq 1 "$RUNS"); do
  for hasher in std fx; do
    /usr/bin/time -f "%U %S" -o "$OUT/time" "$HAND" "$INPUT" --hasher "$hasher" > "$OUT/hand.out"
    ms=$(python3 -c "import json;print(json.load(open('$OUT/hand.out'))['elapsed_ms'])")
    WORDS=$(python3 -c "import json;print(json.load(open('$OUT/hand.out'))['words'])")
    echo "hand-$hasher,$r,$(python3 -c "print(f'{$BYTES/1e6/($ms/1e3):.1f}')"),$ms,$(awk '{print $1+$2}' "$OUT/time")" >> "$CSV"
    tail -1 "$CSV"
  done
  for b in "${BINS[@]}"; do
    label=${b%%=*}; bin=${b#*=}
    rm -rf "$OUT/out"
    timeout 600 /usr/bin/time -f "%U %S" -o "$OUT/time" "$bin" local word-count --input "$INPUT" \
      --output "$OUT/out" -p "$P" --taskmanagers "$P" --slots 1 --json > "$OUT/eddy.json" 2> "$OUT/eddy.err"
    ms=$(python3 -c "import json;print(json.loads(open('$OUT/eddy.json').read().strip().splitlines()[-1])['duration_ms'])")
    lines=$(cat "$OUT"/out/part-* | wc -l)
    [ -z "$WORDS" ] || [ "$lines" = "$WORDS" ] || { echo "$label: $lines output lines, expected $WORDS" >&2; exit 1; }
    echo "$label,$r,$(python3 -c "print(f'{$BYTES/1e6/($ms/1e3):.1f}')"),$ms,$(awk '{print $1+$2}' "$OUT/time")" >> "$CSV"
    tail -1 "$CSV"
  done
done
rm -rf "$OUT/out"
python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
variants = list(dict.fromkeys(r["variant"] for r in rows))
med = {v: statistics.median(float(r["mb_per_s"]) for r in rows if r["variant"] == v) for v in variants}
cpu = {v: statistics.median(float(r["cpu_s"]) for r in rows if r["variant"] == v) for v in variants}
print("\n| variant | MB/s (median) | CPU s | vs hand std | vs hand fx |")
print("|---|---|---|---|---|")
for v in variants:
    print(f"| {v} | {med[v]:.1f} | {cpu[v]:.2f} | {med[v]/med['hand-std']:.2f} | {med[v]/med['hand-fx']:.2f} |")
PY
