#!/usr/bin/env bash
# Eddy's session-cluster figures (issue 4's benchmark); results: bench/RESULTS-recovery.md.
#
#   bench/recovery.sh [standalone|active|startup|rss|all]... [--kills N] [--delays "0 100"]
#                     [--starts N] [--load-s S] [--no-build | --eddy PATH]
#
#   standalone  kill -9 a TaskManager of a 3 TM x 2 slot cluster running a throttled `sequence`
#               job at -p 4 (spare slots), wait until the job is RUNNING with every task RUNNING,
#               then start a replacement `eddy taskmanager` process (pid tracked) so the spare
#               capacity is back before the next kill. Also at -p 2.
#   active      resourcemanager.mode: active, resourcemanager.active.taskmanagers: 3 (2 slots
#               each): the JobManager replaces the killed process itself. At -p 6 the job needs
#               the replacement process; at -p 4 it can restart on the spare slots.
#   startup     `eddy cluster start` (1 JobManager + 3 TaskManagers) until every TaskManager
#               registered: the time the command prints and its wall time (N starts, default 5).
#   rss         VmRSS/VmHWM (/proc/PID/status) of the JobManager and the TaskManagers, idle and
#               under an unthrottled rows-groupby and an unthrottled sequence job (-p 6).
#
# Recovery time = timestamps.RUNNING of GET /jobs/:id (the JobManager switches the job to
# RUNNING once every task reports RUNNING again) - the wall-clock time taken right before the
# kill(2) call, in ms (same host, same clock). Each variant runs with
# restart-strategy.fixed-delay.delay 0 ms and 100 ms (--delays), N kills each (default 10).
#
# It copies target/release/eddy into a private work dir first, so that other engineers'
# rebuilds of the shared target dir cannot change the binary under a run. Every cluster has its
# own conf dir, free ports (never 8081-8083/6123), log dir and checkpoint dir under
# /tmp/eddy-recovery.XXXXXX; the EXIT trap stops every process it started (by pid). Raw results
# (CSV, summaries, logs of failed runs) go to bench/out/recovery/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/recovery
KILLS=10
DELAYS="0 100"
STARTS=5
LOAD_S=30
BUILD=1
EDDY_SRC=""
SUITES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS=$2; shift ;;
    --delays) DELAYS=$2; shift ;;
    --starts) STARTS=$2; shift ;;
    --load-s) LOAD_S=$2; shift ;;
    --no-build) BUILD=0 ;;
    --eddy) EDDY_SRC=$2; BUILD=0; shift ;;
    all) SUITES+=(startup rss standalone active) ;;
    standalone|active|startup|rss) SUITES+=("$1") ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see bench/recovery.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#SUITES[@]} -eq 0 ] && SUITES=(startup rss standalone active)

if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release -p eddy (may wait for the shared target dir's lock)"
  cargo build --release -p eddy 2>&1 | tail -1
  BUILT_FROM="working tree at $(git rev-parse --short HEAD) when built, $(git status --porcelain -- crates Cargo.toml Cargo.lock | wc -l) files under crates/ or Cargo.* differing from it"
elif [ -n "$EDDY_SRC" ]; then
  BUILT_FROM="the binary $EDDY_SRC of $(date -u -r "$EDDY_SRC" '+%Y-%m-%dT%H:%M:%SZ') (HEAD now $(git rev-parse --short HEAD))"
else
  BUILT_FROM="prebuilt target/release/eddy of $(date -u -r target/release/eddy '+%Y-%m-%dT%H:%M:%SZ') (HEAD now $(git rev-parse --short HEAD))"
fi
EDDY_SRC=${EDDY_SRC:-$ROOT/target/release/eddy}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eddy-recovery.XXXXXX)
cp "$EDDY_SRC" "$WORK/eddy"
export EDDY=$WORK/eddy WORK OUT KILLS DELAYS STARTS LOAD_S

cleanup() {
  set +e
  # Clusters first (eddy cluster stop reads their pid files), then every process whose command
  # line names this work dir (replacement TaskManagers, active-mode children), by pid.
  for conf in "$WORK"/*/conf; do
    [ -d "$conf" ] && timeout 30 "$EDDY" cluster stop --conf "$conf" >/dev/null 2>&1
  done
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] && continue
    if { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- "$WORK/"; then
      kill -9 "$pid" 2>/dev/null
    fi
  done
  # Keep the logs of a run that failed; drop checkpoints and outputs.
  if [ -n "$(ls "$WORK"/*/FAILED 2>/dev/null)" ]; then
    for d in "$WORK"/*/; do
      [ -f "$d/FAILED" ] && cp -r "$d/log" "$OUT/failed-$(basename "$d")-log" 2>/dev/null
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

machine() {
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "eddy: $BUILT_FROM; binary sha256 $(sha256sum "$EDDY" | cut -c1-16)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
  echo "uptime: $(uptime)"
}
machine | tee "$OUT/machine-recovery.txt"

python3 - "${SUITES[@]}" <<'PY'
import csv, json, os, re, signal, socket, statistics, subprocess, sys, time
import urllib.error, urllib.request

EDDY, WORK, OUT = os.environ["EDDY"], os.environ["WORK"], os.environ["OUT"]
KILLS, STARTS, LOAD_S = int(os.environ["KILLS"]), int(os.environ["STARTS"]), int(os.environ["LOAD_S"])
DELAYS = [int(d) for d in os.environ["DELAYS"].split()]
TERMINAL = ("FINISHED", "FAILED", "CANCELED")


def now_ms():
    return time.time() * 1000.0


def load1():
    return float(open("/proc/loadavg").read().split()[0])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(addr, path, method="GET", timeout=2.0):
    req = urllib.request.Request(f"http://{addr}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def all_tasks_running(j):
    vs = j.get("vertices") or []
    return j.get("state") == "RUNNING" and vs and all(
        v["tasks"]["RUNNING"] == v["parallelism"] for v in vs)


def proc_mem(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return out


class Failed(Exception):
    pass


class Cluster:
    """A conf dir (config.yaml, masters, workers) with its own ports, logs and checkpoints."""

    def __init__(self, name, workers, extra):
        self.dir = os.path.join(WORK, name)
        self.conf = os.path.join(self.dir, "conf")
        self.log = os.path.join(self.dir, "log")
        os.makedirs(self.conf, exist_ok=True)
        rest, rpc = free_port(), free_port()
        self.rest = f"127.0.0.1:{rest}"
        keys = {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": str(rpc),
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": "2",
            "parallelism.default": "2",
            "execution.checkpointing.interval": "1 s",
            "execution.checkpointing.dir": os.path.join(self.dir, "checkpoints"),
            "state.checkpoints.num-retained": "2",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "unlimited",
            "restart-strategy.fixed-delay.delay": "100 ms",
            "jobmanager.execution.failover-strategy": "region",
            "heartbeat.interval": "1 s",
            "heartbeat.timeout": "5 s",
            "env.log.dir": self.log,
        }
        keys.update(extra)
        self.keys = keys
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in keys.items())
        with open(os.path.join(self.conf, "masters"), "w") as f:
            f.write(f"127.0.0.1:{rest}\n")
        with open(os.path.join(self.conf, "workers"), "w") as f:
            f.write("localhost\n" * workers)
        self.children = []  # processes this script started itself (replacement TaskManagers)

    def eddy(self, *args, timeout=60):
        return subprocess.run([EDDY, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "EDDY_LOG": "info"})

    def start(self):
        t0 = now_ms()
        r = self.eddy("cluster", "start", "--conf", self.conf)
        wall = now_ms() - t0
        if r.returncode != 0:
            self.fail(f"cluster start failed: {r.stderr.strip()}")
        m = re.search(r"started in ([0-9.]+) s", r.stdout)
        return wall, (float(m.group(1)) * 1000 if m else None), r.stdout.strip()

    def stop(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.children = []
        self.eddy("cluster", "stop", "--conf", self.conf, timeout=60)

    def fail(self, why):
        open(os.path.join(self.dir, "FAILED"), "w").write(why + "\n")
        raise Failed(why)

    def get(self, path):
        code, v = http(self.rest, path)
        return v if code == 200 else None

    def tms(self):
        v = self.get("/taskmanagers")
        return v["taskmanagers"] if v else []

    def jm_pid(self):
        return int(open(os.path.join(self.log, "eddy-jobmanager-0.pid")).readline())

    def wait(self, what, limit_s, probe, every=0.005):
        deadline = time.time() + limit_s
        while True:
            v = probe()
            if v:
                return v
            if time.time() > deadline:
                self.fail(f"gave up after {limit_s} s waiting for {what}")
            time.sleep(every)

    def submit(self, job_args, p):
        r = self.eddy("run", *job_args, "-p", str(p), "-d", "-m", self.rest)
        if r.returncode != 0:
            self.fail(f"eddy run failed: {r.stderr.strip()}")
        jid = r.stdout.strip().splitlines()[-1]
        self.wait(f"job {jid} RUNNING with all tasks", 60, lambda: (
            (lambda j: j and (all_tasks_running(j) or j["state"] in TERMINAL))(self.get(f"/jobs/{jid}"))))
        return jid

    def start_taskmanager(self, n):
        log = open(os.path.join(self.log, f"eddy-taskmanager-replacement-{n}.log"), "a")
        p = subprocess.Popen([EDDY, "taskmanager", "--conf", self.conf, "-D", "taskmanager.host=127.0.0.1"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                             env={**os.environ, "EDDY_LOG": "info"})
        self.children.append(p)
        return p

    def tail(self, n=15):
        out = []
        for f in sorted(os.listdir(self.log)):
            if f.endswith(".log"):
                lines = open(os.path.join(self.log, f), errors="replace").read().splitlines()
                out.append(f"--- {f}")
                out.extend(lines[-n:])
        return "\n".join(out)


def summary_row(label, xs):
    if not xs:
        return f"| {label} | 0 | - | - | - |"
    return (f"| {label} | {len(xs)} | {statistics.median(xs):.0f} | {min(xs):.0f} | {max(xs):.0f} |")


SUMMARY = []


def emit(line=""):
    print(line, flush=True)
    SUMMARY.append(line)


STAMP = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write_csv(name, rows):
    """Appends rows to OUT/<name>-<start of this run>.csv."""
    if not rows:
        return
    path = os.path.join(OUT, f"{name}-{STAMP}.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        if new:
            w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------
# TaskManager kills
# ---------------------------------------------------------------------------------------------

SEQ = ["sequence", "--keys", "100", "--per-key", "100000000", "--rate", "2000"]


def steady(c, jid, tm_count, after_ms):
    """All tasks RUNNING, tm_count TaskManagers registered, a checkpoint completed after
    after_ms, and at least 1 s since after_ms."""
    def probe():
        d = c.get(f"/jobs/{jid}/eddy-details")
        j = c.get(f"/jobs/{jid}")
        if not d or not j:
            return None
        if j["state"] in TERMINAL:
            c.fail(f"job {jid} ended: {j['state']}")
        lc = (d.get("checkpoints") or {}).get("latest_completed") or {}
        ok = (all_tasks_running(j) and len(c.tms()) == tm_count
              and lc.get("trigger_timestamp_ms", 0) > after_ms and now_ms() > after_ms + 1000)
        return (j, d) if ok else None
    return c.wait("a steady job (all tasks RUNNING, all TaskManagers, a new checkpoint)", 90, probe, 0.05)


def kill_series(c, variant, jid, kills, mode):
    """mode: 'manual' (start a replacement TaskManager ourselves) or 'active'."""
    rows = []
    after = 0
    for i in range(kills):
        j, _ = steady(c, jid, 3, after)
        restarts0 = j["restarts"]
        tms = c.tms()
        busy = [t for t in tms if t["slotsNumber"] - t["freeSlots"] > 0]
        victim = busy[i % len(busy)]
        used = victim["slotsNumber"] - victim["freeSlots"]
        la = load1()
        t_kill = now_ms()
        os.kill(victim["pid"], signal.SIGKILL)
        seen_restarting = None
        replaced_at = None  # active mode: when the replacement process shows in /taskmanagers

        def replaced():
            ts_ = c.tms()
            return len(ts_) == 3 and all(t["pid"] != victim["pid"] for t in ts_)

        def recovered():
            nonlocal seen_restarting, replaced_at
            if mode == "active" and replaced_at is None and replaced():
                replaced_at = now_ms()
            j = c.get(f"/jobs/{jid}")
            if not j:
                return None
            if j["state"] in TERMINAL:
                c.fail(f"job {jid} ended after kill {i}: {j['state']}\n{c.tail()}")
            if j["state"] != "RUNNING" and seen_restarting is None:
                seen_restarting = now_ms()
            ts = j["timestamps"]
            if j["state"] == "RUNNING" and ts["RUNNING"] >= int(t_kill) and all_tasks_running(j):
                return j
            return None
        try:
            j = c.wait(f"job RUNNING again after kill {i}", 60, recovered)
        except Failed:
            emit(f"FAILED: {variant} kill {i}: the job did not run again within 60 s")
            print(c.tail(40), file=sys.stderr)
            raise
        t_seen = now_ms()
        ts = j["timestamps"]
        row = {
            "variant": variant, "kill": i, "victim_pid": victim["pid"], "victim_slots_used": used,
            "load1": la, "t_kill_ms": round(t_kill, 1),
            # JobManager timestamps are whole ms: compare with the kill's ms.
            "restarting_ms": round(ts["RESTARTING"] - t_kill, 1) if ts["RESTARTING"] >= int(t_kill) else "",
            "recovery_ms": round(ts["RUNNING"] - t_kill, 1),
            "observed_ms": round(t_seen - t_kill, 1),
            "restarts": j["restarts"] - restarts0,
        }
        # Restore the spare capacity: our own replacement, or the active resource manager's.
        if mode == "manual":
            t_sp = now_ms()
            c.start_taskmanager(i)
            c.wait("3 TaskManagers registered again", 60, replaced, 0.005)
            row["replacement_registered_ms"] = round(now_ms() - t_sp, 1)
        else:
            if replaced_at is None:
                c.wait("3 TaskManagers registered again", 60, replaced, 0.005)
                replaced_at = now_ms()
            row["replacement_registered_ms"] = round(replaced_at - t_kill, 1)
        after = ts["RUNNING"]
        rows.append(row)
        print(f"  {variant} kill {i}: pid {victim['pid']} ({used} slots used), recovery "
              f"{row['recovery_ms']:.0f} ms (RESTARTING at +{row['restarting_ms']} ms, seen at "
              f"+{row['observed_ms']:.0f} ms), replacement TM registered "
              f"{row['replacement_registered_ms']:.0f} ms {'after its start' if mode == 'manual' else 'after the kill'}, "
              f"load {la}", flush=True)
    # Extra restarts caused by a kill show up before the next steady state.
    j, _ = steady(c, jid, 3, after)
    return rows, j["restarts"]


def tm_kills(kind):
    allrows = []
    if kind == "standalone":
        variants = [(4, d) for d in DELAYS] + [(2, d) for d in DELAYS]
    else:
        variants = [(6, d) for d in DELAYS] + [(4, d) for d in DELAYS]
    for p, delay in variants:
        variant = f"{kind}-p{p}-delay{delay}ms"
        extra = {"restart-strategy.fixed-delay.delay": f"{delay} ms"}
        if kind == "active":
            extra.update({"resourcemanager.mode": "active", "resourcemanager.active.taskmanagers": "3"})
        c = Cluster(variant, 3 if kind == "standalone" else 0, extra)
        print(f"== {variant}: load {load1()}", flush=True)
        try:
            c.start()
            jid = c.submit(SEQ + ["--output", os.path.join(c.dir, "out")], p)
            rows, restarts = kill_series(c, variant, jid, KILLS, "manual" if kind == "standalone" else "active")
            for r in rows:
                r["job_restarts_total"] = restarts
            allrows.extend(rows)
            write_csv("tm-kills", rows)
            rec = [r["recovery_ms"] for r in rows]
            print(f"   {variant}: median {statistics.median(rec):.0f} ms, max {max(rec):.0f} ms, "
                  f"{restarts} restarts for {len(rows)} kills", flush=True)
        except Failed as e:
            emit(f"FAILED {variant}: {e}")
        finally:
            c.stop()
    emit(f"### {kind}: TaskManager kill -9 -> job RUNNING with all tasks (timestamps.RUNNING - kill), ms")
    emit()
    emit("| variant | kills | median | min | max | RESTARTING after kill (median) | replacement TM registered (median) | load1 at kills (median, max) |")
    emit("|---|---|---|---|---|---|---|---|")
    for v in dict.fromkeys(r["variant"] for r in allrows):
        rs = [r for r in allrows if r["variant"] == v]
        rec = [r["recovery_ms"] for r in rs]
        det = [r["restarting_ms"] for r in rs if r["restarting_ms"] != ""]
        reg = [r["replacement_registered_ms"] for r in rs]
        la = [r["load1"] for r in rs]
        emit(f"| {v} | {len(rs)} | {statistics.median(rec):.0f} | {min(rec):.0f} | {max(rec):.0f} | "
             f"{statistics.median(det):.0f} | {statistics.median(reg):.0f} | "
             f"{statistics.median(la):.2f}, {max(la):.2f} |")
    emit()


# ---------------------------------------------------------------------------------------------
# Start-up and memory
# ---------------------------------------------------------------------------------------------

def startup():
    rows = []
    for mode in ("standalone", "active"):
        for i in range(STARTS):
            extra = {}
            if mode == "active":
                extra = {"resourcemanager.mode": "active", "resourcemanager.active.taskmanagers": "3"}
            c = Cluster(f"startup-{mode}-{i}", 3 if mode == "standalone" else 0, extra)
            la = load1()
            try:
                wall, printed, line = c.start()
                ov = c.get("/overview") or {}
                t0 = now_ms()
                c.stop()
                stop_ms = now_ms() - t0
                rows.append({"mode": mode, "run": i, "wall_ms": round(wall, 1), "printed_ms": printed,
                             "taskmanagers": ov.get("taskmanagers"), "slots": ov.get("slots-total"),
                             "stop_ms": round(stop_ms, 1), "load1": la})
                print(f"  startup {mode} {i}: wall {wall:.0f} ms, printed {printed:.0f} ms, "
                      f"{ov.get('taskmanagers')} TMs, stop {stop_ms:.0f} ms, load {la} | {line}", flush=True)
            except Failed as e:
                emit(f"FAILED startup {mode} {i}: {e}")
                c.stop()
            time.sleep(1)
    write_csv("startup", rows)
    emit("### eddy cluster start (1 JobManager + 3 TaskManagers x 2 slots) -> all TaskManagers registered, ms")
    emit()
    emit("| mode | starts | wall median | wall max | printed median | printed max | TaskManagers registered | `cluster stop` median | load1 (median) |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for mode in ("standalone", "active"):
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        w = [r["wall_ms"] for r in rs]
        p = [r["printed_ms"] for r in rs]
        emit(f"| {mode} | {len(rs)} | {statistics.median(w):.0f} | {max(w):.0f} | {statistics.median(p):.0f} | "
             f"{max(p):.0f} | {sorted(set(r['taskmanagers'] for r in rs))} | "
             f"{statistics.median([r['stop_ms'] for r in rs]):.0f} | {statistics.median([r['load1'] for r in rs]):.2f} |")
    emit()


def rss():
    rows = []

    def snapshot(c, phase):
        pids = [("jobmanager", c.jm_pid())] + [(f"taskmanager", t["pid"]) for t in sorted(c.tms(), key=lambda t: t["pid"])]
        out = []
        for role, pid in pids:
            m = proc_mem(pid)
            out.append({"phase": phase, "role": role, "pid": pid, "VmRSS_kB": m.get("VmRSS"), "VmHWM_kB": m.get("VmHWM")})
        return out

    loads = [
        ("rows-groupby", ["rows-groupby", "--records", "0", "--keys", "10000"]),
        ("sequence", ["sequence", "--keys", "1000", "--per-key", "100000"]),
    ]
    for name, args in loads:
        c = Cluster(f"rss-{name}", 3, {})
        try:
            c.start()
            time.sleep(5)
            if name == "rows-groupby":
                rows.extend(snapshot(c, "idle (5 s after start)"))
            if name == "sequence":
                args = args + ["--output", os.path.join(c.dir, "out")]
            la0 = load1()
            jid = c.submit(args, 6)
            peak = {}
            t_end = time.time() + LOAD_S
            while time.time() < t_end:
                for r in snapshot(c, "load"):
                    if r["VmRSS_kB"] and r["VmRSS_kB"] > peak.get(r["pid"], (0, ""))[0]:
                        peak[r["pid"]] = (r["VmRSS_kB"], r["role"])
                time.sleep(0.5)
            j = c.get(f"/jobs/{jid}") or {}
            d = c.get(f"/jobs/{jid}/eddy-details") or {}
            recs = sum(v.get("records_out", 0) for v in d.get("vertices", [])[:1])
            snap = snapshot(c, f"{name} -p 6 unthrottled, {LOAD_S} s (job {j.get('state')} at the end)")
            for r in snap:
                r["max_sampled_VmRSS_kB"] = peak.get(r["pid"], (None,))[0]
                r["job_state"] = j.get("state")
                r["source_records"] = recs
                r["load1"] = la0
            rows.extend(snap)
            c.eddy("cancel", jid, "-m", c.rest)
            time.sleep(3)
            rows.extend(snapshot(c, f"idle 3 s after {name} was cancelled (or had finished)"))
            print(f"  rss {name}: {recs} source records in {LOAD_S} s, job {j.get('state')}, load at start {la0}", flush=True)
        except Failed as e:
            emit(f"FAILED rss {name}: {e}")
        finally:
            c.stop()
            subprocess.run(["rm", "-rf", os.path.join(c.dir, "out"), os.path.join(c.dir, "checkpoints")])
    write_csv("rss", rows)
    emit("### Memory (MiB; VmRSS now / VmHWM peak since process start), 1 JobManager + 3 TaskManagers x 2 slots")
    emit()
    emit("| phase | JobManager RSS / HWM | TaskManagers RSS at the end (each) | TaskManagers max sampled RSS (each, every 0.5 s) | TaskManagers HWM (each) |")
    emit("|---|---|---|---|---|")
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    mib = lambda k: f"{k / 1024:.1f}" if k else "-"
    for ph in phases:
        rs = [r for r in rows if r["phase"] == ph]
        jm = [r for r in rs if r["role"] == "jobmanager"]
        tm = [r for r in rs if r["role"] == "taskmanager"]
        emit(f"| {ph} | {mib(jm[0]['VmRSS_kB']) if jm else '-'} / {mib(jm[0]['VmHWM_kB']) if jm else '-'} | "
             f"{', '.join(mib(r['VmRSS_kB']) for r in tm)} | "
             f"{', '.join(mib(r.get('max_sampled_VmRSS_kB')) for r in tm) if any(r.get('max_sampled_VmRSS_kB') for r in tm) else '-'} | "
             f"{', '.join(mib(r['VmHWM_kB']) for r in tm)} |")
    emit()


for suite in sys.argv[1:]:
    print(f"== suite {suite} (load {load1()})", flush=True)
    {"standalone": lambda: tm_kills("standalone"), "active": lambda: tm_kills("active"),
     "startup": startup, "rss": rss}[suite]()

with open(os.path.join(OUT, f"recovery-summary-{STAMP}.md"), "w") as f:
    f.write(open(os.path.join(OUT, "machine-recovery.txt")).read() + "\n" + "\n".join(SUMMARY) + "\n")
print(f"summary: {OUT}/recovery-summary-{STAMP}.md")
PY
echo "end: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), uptime: $(uptime)"
