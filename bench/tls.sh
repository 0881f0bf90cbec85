#!/usr/bin/env bash
# What mutual TLS on the data plane and RPC costs in throughput (issue 14 item 4); results:
# bench/RESULTS.md, "TLS on vs off".
#
#   bench/tls.sh [--runs N] [--eddy PATH]
#
# `eddy local sequence` unthrottled at -p 2 on 2 TaskManagers x 1 slot (the keyed exchange
# crosses TCP between the TaskManagers, and every task talks RPC to the JobManager), with
# security.ssl.internal.enabled false and true (certificates from `eddy cert generate`), the two
# variants interleaved round by round, N rounds (default 5). Throughput = records / the job's
# duration_ms from the --json summary; wall and CPU from /usr/bin/time. Raw rows go to
# bench/out/tls/tls.csv, logs to bench/out/tls/logs/. The load average is recorded per run.
# Every run is bounded by `timeout`; nothing is written outside bench/out/tls.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/tls
RUNS=5
EDDY=${CARGO_TARGET_DIR:-$ROOT/target}/release/eddy
SEQ_KEYS=${SEQ_KEYS:-10000}
SEQ_PER_KEY=${SEQ_PER_KEY:-15000}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --eddy) EDDY=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see bench/tls.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$EDDY" ] || { echo "no eddy binary at $EDDY (cargo build --release -p eddy, or --eddy PATH)" >&2; exit 2; }
mkdir -p "$OUT/logs"
rm -rf "$OUT/certs" "$OUT/seq-out"
"$EDDY" cert generate "$OUT/certs" > /dev/null
TLS_KEYS=(-D security.ssl.internal.enabled=true
          -D "security.ssl.internal.cert=$OUT/certs/cert.pem"
          -D "security.ssl.internal.key=$OUT/certs/key.pem"
          -D "security.ssl.internal.trust-cert=$OUT/certs/ca.pem")
RECORDS=$((SEQ_KEYS * SEQ_PER_KEY))
CSV=$OUT/tls.csv
echo "variant,round,records,duration_ms,mrecords_per_s,wall_s,cpu_s,load1,output_lines" > "$CSV"
echo "start: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); eddy: $EDDY ($(date -u -r "$EDDY" '+%Y-%m-%dT%H:%M:%SZ')); HEAD $(git rev-parse --short HEAD); nproc $(nproc); $(uptime)"
for round in $(seq 1 "$RUNS"); do
  for variant in off on; do
    extra=()
    [ "$variant" = on ] && extra=("${TLS_KEYS[@]}")
    rm -rf "$OUT/seq-out"
    load1=$(cut -d' ' -f1 /proc/loadavg)
    log=$OUT/logs/$variant-$round
    timeout "$RUN_TIMEOUT" /usr/bin/time -f '%e %U %S' -o "$log.time" \
      "$EDDY" local sequence --keys "$SEQ_KEYS" --per-key "$SEQ_PER_KEY" --output "$OUT/seq-out" \
        -p 2 --taskmanagers 2 --slots 1 --json "${extra[@]}" > "$log.json" 2> "$log.err"
    dur=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["duration_ms"])' "$log.json")
    read -r wall user sys < "$log.time"
    lines=$(cat "$OUT"/seq-out/part-* 2>/dev/null | wc -l)
    [ "$lines" -eq "$RECORDS" ] || { echo "TLS $variant round $round: $lines output lines, expected $RECORDS" >&2; exit 1; }
    mrps=$(python3 -c "print(round($RECORDS / $dur / 1000, 2))")
    cpu=$(python3 -c "print(round($user + $sys, 2))")
    echo "$variant,$round,$RECORDS,$dur,$mrps,$wall,$cpu,$load1,$lines" >> "$CSV"
    echo "  round $round TLS $variant: $mrps M records/s ($dur ms, wall $wall s, CPU $cpu s, load1 $load1)"
  done
done
rm -rf "$OUT/seq-out"
python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
print("| internal TLS | runs | M records/s median (min-max) | duration ms median | wall s median | CPU s median | load1 at start (median, max) |")
print("|---|---|---|---|---|---|---|")
for v in ("off", "on"):
    r = [x for x in rows if x["variant"] == v]
    m = [float(x["mrecords_per_s"]) for x in r]
    med[v] = statistics.median(m)
    print(f"| {v} | {len(r)} | **{med[v]:.2f}** ({min(m):.2f}-{max(m):.2f}) | {statistics.median(float(x['duration_ms']) for x in r):.0f} | "
          f"{statistics.median(float(x['wall_s']) for x in r):.2f} | {statistics.median(float(x['cpu_s']) for x in r):.2f} | "
          f"{statistics.median(float(x['load1']) for x in r):.2f}, {max(float(x['load1']) for x in r):.2f} |")
print(f"\nratio on/off (median throughput): {med['on'] / med['off']:.3f}")
PY
echo "end: $(date -u '+%Y-%m-%dT%H:%M:%SZ'); $(uptime)"
