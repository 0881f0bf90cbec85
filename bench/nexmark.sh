#!/usr/bin/env bash
# Nexmark benchmark (issue 16): each query of `eddy local nexmark-qN` for a fixed number of
# events, checkpoints every 10 s, the output discarded (`--output blackhole`, as Flink's Nexmark
# suite uses a blackhole sink). Results and how to read them: bench/RESULTS.md, "Nexmark".
#
#   bench/nexmark.sh [--events N] [--runs R] [--queries "0 1 2 3 4 5 7 8"] [-p P] [--eddy PATH]
#                    [LABEL=EDDY_BINARY ...]
#
# With LABEL=EDDY_BINARY arguments (e.g. old=... new=...) every run goes through each binary in
# turn (interleaved on a shared machine), and the summary gives each query per binary and the
# ratio of the last binary to the first.
# Per run: events/s = events / the job's duration_ms (from the --json summary: submission to
# FINISHED, deployment included), CPU = user + sys of the whole `eddy local` process and peak RSS
# (/usr/bin/time -v; the JobManager and both TaskManagers share that process). Prints one CSV row
# per run and, per query, the medians: events/s, events/s per core (÷ nproc), events per
# CPU-second, CPU s and peak RSS. Every run is bounded by `timeout`; writes only under bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=10000000
RUNS=5
QUERIES="0 1 2 3 4 5 7 8"
P=2
EDDY=${CARGO_TARGET_DIR:-target}/release/eddy
BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --events) EVENTS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --queries) QUERIES=$2; shift ;;
    -p) P=$2; shift ;;
    --eddy) EDDY=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *=*) BINS+=("$1") ;;
    *) echo "unknown argument '$1'; usage: bench/nexmark.sh [--events N] [--runs R] [--queries \"0 1 ...\"] [-p P] [--eddy PATH]" >&2; exit 2 ;;
  esac
  shift
done
[ ${#BINS[@]} -gt 0 ] || BINS=("eddy=$EDDY")
for b in "${BINS[@]}"; do
  [ -x "${b#*=}" ] || { echo "no eddy binary at ${b#*=}: cargo build --release -p eddy (or --eddy PATH)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 1; }
OUT=bench/out/nexmark
mkdir -p "$OUT"
CSV=$OUT/runs.csv
CORES=$(nproc)
echo "variant,query,run,events,parallelism,duration_ms,events_per_s,cpu_s,peak_rss_kb,checkpoints" > "$CSV"
for r in $(seq 1 "$RUNS"); do
  for q in $QUERIES; do
    for b in "${BINS[@]}"; do
    label=${b%%=*}; bin=${b#*=}
    log=$OUT/$label-q$q-run$r
    timeout 900 /usr/bin/time -v -o "$log.time" "$bin" local "nexmark-q$q" --events "$EVENTS" \
      --output blackhole -p "$P" --taskmanagers "$P" --slots 1 \
      -D execution.checkpointing.interval=10s --json > "$log.json" 2> "$log.err" \
      || { echo "nexmark-q$q run $r ($label) failed: see $log.err" >&2; exit 1; }
    python3 - "$label" "$q" "$r" "$EVENTS" "$P" "$log" >> "$CSV" <<'PY'
import json, re, sys
label, q, r, events, p, log = sys.argv[1:]
s = json.loads(open(log + ".json").read().strip().splitlines()[-1])
assert s["status"] == "FINISHED", s
t = open(log + ".time").read()
num = lambda k: float(re.search(re.escape(k) + r": ([0-9.]+)", t).group(1))
cpu = num("User time (seconds)") + num("System time (seconds)")
rss = int(num("Maximum resident set size (kbytes)"))
d = s["duration_ms"]
print(f"{label},{q},{r},{events},{p},{d},{int(events) * 1000 / d:.0f},{cpu:.2f},{rss},{s['completed_checkpoints']}")
PY
    tail -1 "$CSV"
    done
  done
done
python3 - "$CSV" "$CORES" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cores = int(sys.argv[2])
# The issue's table (events/s per core): Flink 1.13's published figures, and Feldera's published
# figures, which are for 16 cores: their per-core figure here is theirs ÷ 16.
flink = {"0": 155e3, "1": 158e3, "2": 175e3, "3": 152e3, "4": 34e3, "5": 22e3, "7": 12e3, "8": 146e3}
feldera = {"0": 436e3, "1": 412e3, "2": 422e3, "3": 413e3, "4": 265e3, "5": 412e3, "7": 196e3, "8": 415e3}
variants = list(dict.fromkeys(r["variant"] for r in rows))
med = {}
print(f"\n| variant | query | events/s (median, min–max) | events/s per core (÷ {cores}) | events per CPU-second | CPU s | peak RSS MB | checkpoints | × Flink | ÷ (5 × Flink) | ÷ (Feldera ÷ 16) | ÷ Feldera's figure as is |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for q in sorted({r["query"] for r in rows}, key=int):
    for v in variants:
        rs = [r for r in rows if r["query"] == q and r["variant"] == v]
        eps = [float(r["events_per_s"]) for r in rs]
        cpu = [float(r["cpu_s"]) for r in rs]
        per_cpu = [int(r["events"]) / float(r["cpu_s"]) for r in rs]
        rss = [int(r["peak_rss_kb"]) / 1024 for r in rs]
        m = statistics.median(eps)
        med[(v, q)] = m
        pc = m / cores
        print(f"| {v} | q{q} | {m/1e3:,.0f} K ({min(eps)/1e3:,.0f}–{max(eps)/1e3:,.0f}) | {pc/1e3:,.0f} K | "
              f"{statistics.median(per_cpu)/1e3:,.0f} K | {statistics.median(cpu):.2f} | {statistics.median(rss):.0f} | "
              f"{statistics.median(int(r['checkpoints']) for r in rs):.0f} | {pc/flink[q]:.1f} | {pc/(5*flink[q]):.2f} | "
              f"{pc/(feldera[q]/16):.1f} | {pc/feldera[q]:.2f} |")
if len(variants) > 1:
    a, b = variants[0], variants[-1]
    print(f"\nevents/s medians, {b} ÷ {a}: " + ", ".join(
        f"q{q} {med[(b, q)]/med[(a, q)]:.2f}" for q in sorted({r['query'] for r in rows}, key=int)))
PY
