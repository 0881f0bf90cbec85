#!/usr/bin/env bash
# Issue 15: a session cluster of WORKERS TaskManagers x 4 slots on 127.0.0.1 (`eddy cluster
# start`, default heartbeats), one `sequence -p P` job (keyed exchange: P*P channels; 4,000 keys x 1,000 at
# 40,000 records/s, so it runs 100 s) submitted with `eddy run -d`; prints the time from submit to all tasks RUNNING (REST polled every 20 ms by a
# poller started before the submit),
# restarts and TaskManagers lost (JobManager log: "TaskManager ... lost"), then, 5 s after
# RUNNING, the TaskManagers' VmRSS and threads from /proc (median / max, and the task threads of
# the TaskManager with the most threads). Everything is stopped at the end (also on failure).
#
#   bench/scale.sh WORKERS P        (EDDY_BIN=path to the binary, default
#                                    $CARGO_TARGET_DIR/release/eddy or target/release/eddy;
#                                    KEEP_LOGS=DIR keeps the cluster's logs there; RATE=records/s
#                                    for the whole job, default 40000: with RATE=400 the job's own
#                                    traffic no longer loads the machine while it deploys)
# Also printed: the load average before the run, how long `eddy run -d` took, the CPU seconds of
# the JobManager and of all TaskManagers between submit and all RUNNING, and the JobManager's
# log lines of the phases (submitted, deployed, all subtasks RUNNING).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS="${1:?usage: bench/scale.sh WORKERS P}"
P="${2:?usage: bench/scale.sh WORKERS P}"
BIN="${EDDY_BIN:-${CARGO_TARGET_DIR:-target}/release/eddy}"
[ -x "$BIN" ] || { echo "error: no eddy binary at $BIN (cargo build --release -p eddy, or set EDDY_BIN)" >&2; exit 2; }
DIR="$(mktemp -d /tmp/eddy-scale-XXXXXX)"
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
execution.checkpointing.interval: 1 s
execution.checkpointing.dir: $DIR/checkpoints
env.log.dir: $DIR/log
EOF
echo "127.0.0.1:$REST" > "$DIR/conf/masters"
for _ in $(seq "$WORKERS"); do echo 127.0.0.1; done > "$DIR/conf/workers"
cleanup() {
  if [ -n "${POLLER:-}" ]; then kill "$POLLER" 2>/dev/null || true; fi
  "$BIN" cluster stop --conf "$DIR/conf" >/dev/null 2>&1 || true
  for f in "$DIR"/log/*.pid; do
    pid=$(head -1 "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && grep -q eddy "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  if [ -n "${KEEP_LOGS:-}" ]; then rm -rf "$KEEP_LOGS"; cp -r "$DIR/log" "$KEEP_LOGS"; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $BIN: $WORKERS TaskManagers x 4 slots, sequence -p $P"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU seconds (user + system) of the JobManager and, summed, of the TaskManagers so far.
cpu_seconds() {
  python3 - "$DIR/log" <<'PY'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
def cpu(pattern):
    total = 0
    for f in glob.glob(f"{sys.argv[1]}/{pattern}"):
        try:
            pid = open(f).read().split()[0]
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(st[11]) + int(st[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total
print(f"{cpu('eddy-jobmanager-*.pid'):.2f} {cpu('eddy-taskmanager-*.pid'):.2f}")
PY
}
T0=$(date +%s.%N)
"$BIN" cluster start --conf "$DIR/conf" >/dev/null
T1=$(date +%s.%N)
echo "cluster start: $(python3 -c "print(round($T1-$T0,2))") s"
# The REST poller starts before the submit and waits for the job id, so its own start-up (slow
# on a loaded machine) is not counted: it polls `GET /jobs/<id>` every 20 ms and records the
# time it first saw every subtask RUNNING.
python3 - "127.0.0.1:$REST" "$DIR/jobid" "$DIR/running-at" <<'PY' &
import json, os, sys, time, urllib.request
rest, idfile, out = sys.argv[1:4]
open(idfile + ".ready", "w").close()
deadline = time.time() + 60
while not os.path.exists(idfile):
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.005)
job = open(idfile).read().strip()
start = time.time()
while True:
    try:
        j = json.load(urllib.request.urlopen(f"http://{rest}/jobs/{job}", timeout=10))
    except Exception as e:
        j = {"error": repr(e)}
    vs = j.get("vertices") or []
    if j.get("state") == "RUNNING" and vs and all(v["tasks"].get("RUNNING") == v["parallelism"] for v in vs):
        break
    if j.get("state") in ("FAILED", "CANCELED", "FINISHED"):
        print("job ended:", j.get("state")); sys.exit(1)
    if time.time() - start > 120:
        print("gave up after 120 s:", json.dumps(j)[:1500]); sys.exit(1)
    time.sleep(0.02)
open(out, "w").write(f"{time.time()}\n")
PY
POLLER=$!
until [ -e "$DIR/jobid.ready" ]; do sleep 0.01; done
read -r JM_CPU0 TM_CPU0 < <(cpu_seconds)
T1=$(date +%s.%N)
echo "eddy run -d started at $(date -u -d @"$T1" +%T.%6N) (UTC; the JobManager's log lines below have the same clock)"
JOB=$("$BIN" run sequence --keys 4000 --per-key 1000 --rate "${RATE:-40000}" -p "$P" -d -D pipeline.max-parallelism=4096 \
  --output "$DIR/out" -m "127.0.0.1:$REST" --conf "$DIR/conf" 2>"$DIR/run.err") \
  || { echo "error: submit failed: $(tail -1 "$DIR/run.err")" >&2; exit 1; }
T_RET=$(date +%s.%N)
echo "$JOB" > "$DIR/jobid.tmp" && mv "$DIR/jobid.tmp" "$DIR/jobid"
echo "eddy run -d (until POST /jobs answered and it exited): $(python3 -c "print(round($T_RET-$T1,2))") s"
wait "$POLLER" || { echo "error: the REST poller did not see every subtask RUNNING" >&2; exit 1; }
T2=$(cat "$DIR/running-at")
echo "all tasks RUNNING after \`eddy run -d\` returned: $(python3 -c "print(round(max(0, $T2-$T_RET),2))") s"
echo "submit (start of eddy run -d) to all tasks RUNNING: $(python3 -c "print(round($T2-$T1,2))") s"
read -r JM_CPU1 TM_CPU1 < <(cpu_seconds)
echo "CPU seconds from submit to all RUNNING: JobManager $(python3 -c "print(round($JM_CPU1-$JM_CPU0,2))"), TaskManagers (sum) $(python3 -c "print(round($TM_CPU1-$TM_CPU0,2))")"
# Where the TaskManagers' CPU went (threads alive now, by name; task threads as task-*).
python3 - "$DIR/log" <<'PY'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
by = {}
for f in glob.glob(f"{sys.argv[1]}/eddy-taskmanager-*.pid"):
    pid = open(f).read().split()[0]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        continue
    for t in tids:
        try:
            comm = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            st = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "task-*" if comm.startswith("task-") else comm
        by[name] = by.get(name, 0) + (int(st[11]) + int(st[12])) / tick
top = sorted(by.items(), key=lambda kv: -kv[1])[:8]
print("TaskManager CPU seconds since start by thread: " + ", ".join(f"{k} {v:.1f}" for k, v in top))
PY
# The JobManager's own phases (its log's timestamps): submitted, deployed, every subtask RUNNING.
grep -hE "submitting job|deployed [0-9]+ subtasks|subtasks RUNNING" "$DIR"/log/eddy-jobmanager-0.log | cut -c1-200 || true
sleep 5
python3 - "$DIR/log" <<'PY'
import glob, os, statistics, sys
log = sys.argv[1]
rows = []
for f in glob.glob(f"{log}/eddy-taskmanager-*.pid"):
    pid = open(f).read().split()[0]
    try:
        st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
    except OSError:
        continue
    rss = int(st["VmRSS"].split()[0]) / 1024
    thr = int(st["Threads"])
    tasks = sum(1 for t in os.listdir(f"/proc/{pid}/task")
                if open(f"/proc/{pid}/task/{t}/comm").read().startswith("task-"))
    names = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        c = open(f"/proc/{pid}/task/{t}/comm").read().strip()
        c = "task-*" if c.startswith("task-") else c
        names[c] = names.get(c, 0) + 1
    rows.append((rss, thr, tasks, names))
rss = [r[0] for r in rows]; thr = [r[1] for r in rows]
top = max(rows, key=lambda r: r[1] - r[2])
print(f"TaskManagers sampled: {len(rows)}")
print(f"TM RSS MiB: median {statistics.median(rss):.1f}, max {max(rss):.1f}, total {sum(rss)/1024:.2f} GiB")
print(f"TM threads: median {statistics.median(thr)}, max {max(thr)}, total {sum(thr)}; "
      f"most threads besides tasks: {top[1]} with {top[2]} task threads: {top[3]}")
PY
echo "TaskManagers lost (heartbeat or connection, JobManager log): $(grep -c "TaskManager .* lost" "$DIR"/log/eddy-jobmanager-0.log || true)"
echo "job restarts: $(curl -s "http://127.0.0.1:$REST/jobs/$JOB" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("restarts"))')"
