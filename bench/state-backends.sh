#!/usr/bin/env bash
# State backends (issue 12): keyed count+sum (`rows-groupby`) with hashmap and rocksdb, and the
# hashmap hot path before/after the state-backend trait. Results: bench/RESULTS.md, *State backends*.
#
#   bench/state-backends.sh EDDY [BASE_EDDY] [--runs N]
#
# EDDY: the release binary under test; BASE_EDDY (optional): a release binary of the commit before,
# for the hashmap before/after rows. Variants are interleaved round by round. Each run is bounded
# by `timeout`; everything goes to bench/out/state-backends/ (logs, one CSV row per run). Figures:
#   M rec/s       records / the job's duration_ms (`--json` summary)
#   rec/s per core records / (user + sys CPU seconds of the whole process, /usr/bin/time)
#   peak RSS      /usr/bin/time's maximum resident set of the process (JobManager included)
set -euo pipefail
cd "$(dirname "$0")/.."
EDDY=$(realpath "$1"); shift
BASE=""
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then BASE=$(realpath "$1"); shift; fi
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    *) echo "unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
OUT=bench/out/state-backends
rm -rf "$OUT"; mkdir -p "$OUT"
CSV=$OUT/runs.csv
echo "variant,round,records,keys,duration_ms,cpu_s,maxrss_kb,status,checkpoints" > "$CSV"
SMALL_RECORDS=${SMALL_RECORDS:-100000000}   # 10 k keys, hashmap
ROCKS_SMALL_RECORDS=${ROCKS_SMALL_RECORDS:-100000000}
BIG_KEYS=10000000
BIG_RECORDS=${BIG_RECORDS:-20000000}        # every key twice

one() {  # variant round binary records keys -D...
  local variant=$1 round=$2 bin=$3 records=$4 keys=$5; shift 5
  local base=$OUT/$variant-$round
  local ckdir=$OUT/ckpt-$variant-$round
  /usr/bin/time -f '%M %U %S' -o "$base.time" timeout -k 10 900 \
    "$bin" local rows-groupby --records "$records" --keys "$keys" -p 2 --taskmanagers 1 --slots 2 --json \
    -D "execution.checkpointing.dir=$ckdir" "$@" > "$base.out" 2> "$base.err" || true
  rm -rf "$ckdir"
  python3 - "$base" "$variant" "$round" "$records" "$keys" >> "$CSV" <<'PY'
import json, sys
base, variant, rnd, records, keys = sys.argv[1:]
rss, u, s = open(base + ".time").read().split()[-3:]
j = {}
for l in reversed([l for l in open(base + ".out") if l.strip().startswith("{")]):
    j = json.loads(l); break
h = (j.get("checkpoints") or {}).get("history") or []
ck = ";".join(f"{c.get('state_size', c.get('size', ''))}b/{c.get('duration_ms', c.get('end_to_end_duration', ''))}ms" for c in h)
print(f"{variant},{rnd},{records},{keys},{j.get('duration_ms','')},{float(u)+float(s):.2f},{rss},{j.get('status','?')},{ck}")
PY
}

for r in $(seq 1 "$RUNS"); do
  if [ -n "$BASE" ]; then
    one hashmap-10k-before "$r" "$BASE" "$SMALL_RECORDS" 10000
  fi
  one hashmap-10k "$r" "$EDDY" "$SMALL_RECORDS" 10000
  one rocksdb-10k "$r" "$EDDY" "$ROCKS_SMALL_RECORDS" 10000 -D state.backend.type=rocksdb
done
# 10^7 keys, once each (minutes per run): with a checkpoint every 5 s, so both backends hold and
# snapshot all state.
one hashmap-10M 1 "$EDDY" "$BIG_RECORDS" "$BIG_KEYS" -D execution.checkpointing.interval=5s
one rocksdb-10M 1 "$EDDY" "$BIG_RECORDS" "$BIG_KEYS" -D execution.checkpointing.interval=5s -D state.backend.type=rocksdb

python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
print("| variant | keys | records | M rec/s (median) | rec/s per core (median) | peak RSS MB (max) | status | checkpoints (size/duration) |")
print("|---|---|---|---|---|---|---|---|")
for v, rs in by.items():
    ok = [r for r in rs if r["duration_ms"]]
    mr = statistics.median(int(r["records"]) / int(r["duration_ms"]) / 1e3 for r in ok) if ok else 0
    pc = statistics.median(int(r["records"]) / float(r["cpu_s"]) / 1e6 for r in ok) if ok else 0
    rss = max(int(r["maxrss_kb"]) for r in rs) / 1024
    print(f"| {v} | {rs[0]['keys']} | {rs[0]['records']} | {mr:.2f} | {pc:.2f} M | {rss:.0f} | {','.join(r['status'] for r in rs)} | {rs[-1]['checkpoints'][:80]} |")
PY
