#!/usr/bin/env bash
# Issue 15, item 4: the per-record fast path before and after the data-plane change, side by
# side, rounds interleaved (old, new, old, new, ...): `sequence` unthrottled at -p 2 on 2
# TaskManagers x 1 slot (every record crosses the TCP exchange) and `word-count` -p 2 on
# 2 TaskManagers, both as in bench/RESULTS.md. Prints one line per run and the medians and the
# new/old ratio of each. Throughput = records (or bytes) / the job's duration_ms (--json).
#
#   bench/scale-throughput.sh OLD_BIN NEW_BIN TEXT_FILE [ROUNDS]   (default 5 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="${1:?usage: OLD_BIN NEW_BIN TEXT_FILE [ROUNDS]}"; NEW="${2:?}"; TEXT="${3:?}"; ROUNDS="${4:-5}"
OUT="$(mktemp -d /tmp/eddy-scale-tp-XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
KEYS=10000; PER_KEY=15000
BYTES=$(stat -c %s "$TEXT")
echo "# $(date -u +%FT%TZ) old=$OLD new=$NEW, $ROUNDS rounds; sequence $KEYS x $PER_KEY; word-count $TEXT ($BYTES bytes)"
for r in $(seq "$ROUNDS"); do
  for v in old new; do
    bin=$OLD; [ "$v" = new ] && bin=$NEW
    python3 bench/tools.py wait-idle 0.25 60 >/dev/null 2>&1 || true
    rm -rf "$OUT/seq"
    ms=$("$bin" local sequence --keys $KEYS --per-key $PER_KEY --output "$OUT/seq" -p 2 --taskmanagers 2 --slots 1 --json 2>/dev/null \
      | python3 -c 'import json,sys; l=[x for x in sys.stdin if x.startswith("{")]; print(json.loads(l[-1])["duration_ms"])')
    lines=$(cat "$OUT"/seq/part-* 2>/dev/null | wc -l)
    echo "sequence $v round $r: duration_ms $ms, $(python3 -c "print(round($KEYS*$PER_KEY/$ms/1e3,2))") M records/s, output lines $lines"
    rm -rf "$OUT/wc"
    python3 bench/tools.py wait-idle 0.25 60 >/dev/null 2>&1 || true
    ms=$("$bin" local word-count --input "$TEXT" --output "$OUT/wc" -p 2 --taskmanagers 2 --json 2>/dev/null \
      | python3 -c 'import json,sys; l=[x for x in sys.stdin if x.startswith("{")]; print(json.loads(l[-1])["duration_ms"])')
    echo "wordcount $v round $r: duration_ms $ms, $(python3 -c "print(round($BYTES/$ms/1e3,1))") MB/s"
  done
done | tee "$OUT/runs.txt"
python3 - "$OUT/runs.txt" <<'PY'
import re, statistics, sys
rows = {}
for l in open(sys.argv[1]):
    m = re.match(r"(\w+) (old|new) round \d+: duration_ms (\d+), ([\d.]+)", l)
    if m:
        rows.setdefault((m[1], m[2]), []).append(float(m[4]))
for job, unit in (("sequence", "M records/s"), ("wordcount", "MB/s")):
    o, n = statistics.median(rows[(job, "old")]), statistics.median(rows[(job, "new")])
    print(f"{job}: old {o:.2f} {unit} (min {min(rows[(job,'old')]):.2f}, max {max(rows[(job,'old')]):.2f}), "
          f"new {n:.2f} {unit} (min {min(rows[(job,'new')]):.2f}, max {max(rows[(job,'new')]):.2f}), new/old {n/o:.3f}")
PY
