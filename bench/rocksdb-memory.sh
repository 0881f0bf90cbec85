#!/usr/bin/env bash
# RocksDB managed memory (issue 12 item 1): throughput and peak RSS of keyed jobs with 10 k and
# 10^7 keys. Results: bench/RESULTS.md, *State backends*.
#
#   bench/rocksdb-memory.sh EDDY [--runs N]
#
# Rows (each run bounded by `timeout`, everything under bench/out/rocksdb-memory/):
#   groupby-rocksdb-10k  `rows-groupby` (keyed count+sum, discarding sink), 10^8 records, 10 k keys,
#                        p=2 (N runs)
#   groupby-rocksdb-10M  the same with 10^7 keys, 2*10^7 records, a checkpoint every 30 s (N runs)
#   seq-<backend>-10M    `sequence --keys 10^7 --per-key 2 -p 1` (the job of the test
#                        rocksdb_ten_million_keys_checkpoint_and_restore_under_a_taskmanager_memory_limit,
#                        same keys: 64 MiB managed memory, a checkpoint every 10 s), with hashmap and
#                        with rocksdb (1 run each): the peak RSS the test bounds.
# Figures: M rec/s = records / the job's duration; rec/s per core = records / (user + sys CPU s of
# the whole process, /usr/bin/time); peak RSS = /usr/bin/time's maximum resident set of the process
# (`eddy local` runs the JobManager and the TaskManager in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
EDDY=$(realpath "$1"); shift
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    *) echo "unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
OUT=bench/out/rocksdb-memory
rm -rf "$OUT"; mkdir -p "$OUT"
CSV=$OUT/runs.csv
echo "variant,round,records,keys,duration_ms,wall_s,cpu_s,maxrss_kb,status,checkpoints" > "$CSV"

one() {  # variant round records keys eddy-args...
  local variant=$1 round=$2 records=$3 keys=$4; shift 4
  local base=$OUT/$variant-$round
  local ckdir=$OUT/ckpt-$variant-$round
  /usr/bin/time -f '%M %U %S %e' -o "$base.time" timeout -k 10 1200 \
    "$EDDY" local "$@" --json -D "execution.checkpointing.dir=$ckdir" > "$base.out" 2> "$base.err" || true
  rm -rf "$ckdir" "$OUT/seq-out"
  python3 - "$base" "$variant" "$round" "$records" "$keys" >> "$CSV" <<'PY'
import json, sys
base, variant, rnd, records, keys = sys.argv[1:]
rss, u, s, e = open(base + ".time").read().split()[-4:]
j = {}
for l in reversed([l for l in open(base + ".out") if l.strip().startswith("{")]):
    j = json.loads(l); break
h = (j.get("checkpoints") or {}).get("history") or []
ck = ";".join(f"{c.get('state_size', '')}b/{c.get('duration_ms', c.get('end_to_end_duration', ''))}ms" for c in h[-3:])
print(f"{variant},{rnd},{records},{keys},{j.get('duration_ms','')},{e},{float(u)+float(s):.2f},{rss},{j.get('status','?')},{ck}")
PY
}

for r in $(seq 1 "$RUNS"); do
  one groupby-rocksdb-10k "$r" 100000000 10000 rows-groupby --records 100000000 --keys 10000 \
    -p 2 --taskmanagers 1 --slots 2 -D state.backend.type=rocksdb
  one groupby-rocksdb-10M "$r" 20000000 10000000 rows-groupby --records 20000000 --keys 10000000 \
    -p 2 --taskmanagers 1 --slots 2 -D state.backend.type=rocksdb -D execution.checkpointing.interval=30s
done
for backend in hashmap rocksdb; do
  one "seq-$backend-10M" 1 20000000 10000000 sequence --keys 10000000 --per-key 2 --output "$OUT/seq-out" \
    -p 1 --taskmanagers 1 --slots 1 -D state.backend.type=$backend -D taskmanager.memory.managed.size=64m \
    -D execution.checkpointing.interval=10s
done

python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
print("| variant | keys | records | runs | M rec/s (median) | M rec/s per core (median) | peak RSS MB (max) | status | last checkpoints (size/duration) |")
print("|---|---|---|---|---|---|---|---|---|")
for v, rs in by.items():
    ok = [r for r in rs if r["duration_ms"]]
    mr = statistics.median(int(r["records"]) / int(r["duration_ms"]) / 1e3 for r in ok) if ok else 0
    pc = statistics.median(int(r["records"]) / float(r["cpu_s"]) / 1e6 for r in ok) if ok else 0
    rss = max(int(r["maxrss_kb"]) for r in rs) / 1024
    print(f"| {v} | {rs[0]['keys']} | {rs[0]['records']} | {len(rs)} | {mr:.2f} | {pc:.2f} | {rss:.0f} | {','.join(r['status'] for r in rs)} | {rs[-1]['checkpoints'][:90]} |")
PY
