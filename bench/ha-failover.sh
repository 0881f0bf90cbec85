#!/usr/bin/env bash
# Eddy's JobManager failover figures (issue 5's benchmark); results: bench/RESULTS-recovery.md.
#
#   bench/ha-failover.sh [--sessions "2 60"] [--kills N] [--kills-long N] [--supervisor on|off]
#                        [--signal kill|stop] [--zk-tick-ms MS] [--keep-logs] [--no-build | --eddy PATH]
#                        [--tls on|off]
#
# For each ZooKeeper session timeout S (seconds; `high-availability.zookeeper.client.
# session-timeout`): a private ZooKeeper (scripts/zookeeper.sh, its own port and dir; its zoo.cfg
# has minSessionTimeout=1000, maxSessionTimeout=60000, tickTime=--zk-tick-ms), an HA cluster of 3
# JobManagers + 3 TaskManagers x 2 slots (conf-ha/'s settings, own ports, unique cluster-id),
# a throttled `sequence` job at -p 4, and N times: kill -9 the leader JobManager, then measure
#   rest_ms     kill -> first JobManager of `masters` answering 200 on GET /overview (the leader;
#               standbys answer 503)
#   running_ms  kill -> timestamps.RUNNING of GET /jobs/:id on that leader. Caveat: for a job
#               a new leader recovers, the JobMaster switches to RUNNING when it deploys the
#               tasks (JobMaster::assign_slots), not when they all report RUNNING (that rule
#               holds for restarts after a task failure), so this is a lower bound
#   observed_ms kill -> this script seeing the job RUNNING with every task RUNNING on the new
#               leader (GET /jobs/:id vertices[].tasks, polled every 5 ms): the headline figure
# The kill time is the wall clock right before kill(2), in ms. N = --kills (default 10) for
# S <= 5 s and --kills-long (default 10) for longer sessions.
#
# --signal stop: SIGSTOP instead of SIGKILL (a paused leader: alive, so nothing closes its
# session; a standby leads once ZooKeeper expired it), then SIGCONT once the job runs under the
# new leader (the old one steps down and rejoins as a standby). Compare observed_ms with the
# session timeout: the target is session timeout + < 500 ms.
# --supervisor on (default): cluster.jobmanager.restart-attempts 1000, so `eddy cluster`'s
# supervisor restarts the killed JobManager and 3 JobManagers are back before the next kill.
# The supervisor also closes the dead leader's ZooKeeper session (docs/ha.md), so the takeover
# no longer waits for the session timeout; session_closed_ms is when its log says so.
# --supervisor off: restart-attempts 0; this script restarts the killed JobManager itself
# (`eddy jobmanager --conf DIR -D rest.port=...`, pid tracked) after the job recovered.
#
# --zk-tick-ms: the private ZooKeeper's tickTime (default 1000). ZooKeeper expires sessions in
# tick buckets, so an expiry (the SIGSTOP case) comes up to one tick after the session timeout.
# --tls on: mutual TLS on every RPC and data connection (security.ssl.internal.*, certificates
# from `eddy cert generate` in the work dir); REST stays plain. Default off.
# Everything lives under /tmp/eddy-ha-bench.XXXXXX; the EXIT trap stops the cluster, ZooKeeper
# and every process it started (by pid). Raw results go to bench/out/recovery/ (with
# --keep-logs also the clusters' log dirs, as bench/out/recovery/logs-<cluster>-<time>/).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/recovery
SESSIONS="2 60"
KILLS=10
KILLS_LONG=10
SUPERVISOR=on
SIGNAL=kill
ZK_TICK_MS=1000
KEEP_LOGS=0
BUILD=1
EDDY_SRC=""
TLS=off
while [ $# -gt 0 ]; do
  case "$1" in
    --sessions) SESSIONS=$2; shift ;;
    --kills) KILLS=$2; shift ;;
    --kills-long) KILLS_LONG=$2; shift ;;
    --supervisor) SUPERVISOR=$2; shift ;;
    --signal) SIGNAL=$2; shift ;;
    --zk-tick-ms) ZK_TICK_MS=$2; shift ;;
    --keep-logs) KEEP_LOGS=1 ;;
    --no-build) BUILD=0 ;;
    --eddy) EDDY_SRC=$2; BUILD=0; shift ;;
    --tls) TLS=$2; shift ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "unknown argument '$1' (see bench/ha-failover.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$SUPERVISOR" in on|off) ;; *) echo "--supervisor on|off" >&2; exit 2 ;; esac
case "$SIGNAL" in kill|stop) ;; *) echo "--signal kill|stop, not '$SIGNAL'" >&2; exit 2 ;; esac
case "$TLS" in on|off) ;; *) echo "--tls on|off" >&2; exit 2 ;; esac

if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release -p eddy (may wait for the shared target dir's lock)"
  cargo build --release -p eddy 2>&1 | tail -1
  BUILT_FROM="working tree at $(git rev-parse --short HEAD) when built, $(git status --porcelain -- crates Cargo.toml Cargo.lock | wc -l) files under crates/ or Cargo.* differing from it"
elif [ -n "$EDDY_SRC" ]; then
  BUILT_FROM="the binary $EDDY_SRC of $(date -u -r "$EDDY_SRC" '+%Y-%m-%dT%H:%M:%SZ') (HEAD now $(git rev-parse --short HEAD))"
else
  BUILT_FROM="prebuilt ${CARGO_TARGET_DIR:-target}/release/eddy of $(date -u -r "${CARGO_TARGET_DIR:-$ROOT/target}/release/eddy" '+%Y-%m-%dT%H:%M:%SZ') (HEAD now $(git rev-parse --short HEAD))"
fi
EDDY_SRC=${EDDY_SRC:-${CARGO_TARGET_DIR:-$ROOT/target}/release/eddy}
scripts/zookeeper.sh install >/dev/null
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eddy-ha-bench.XXXXXX)
cp "$EDDY_SRC" "$WORK/eddy"
TLS_DIR=""
if [ "$TLS" = on ]; then
  TLS_DIR=$WORK/certs
  "$WORK/eddy" cert generate "$TLS_DIR" > /dev/null
fi
ZK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EDDY=$WORK/eddy WORK OUT SESSIONS KILLS KILLS_LONG SUPERVISOR SIGNAL ZK_PORT TLS_DIR

cleanup() {
  set +e
  for conf in "$WORK"/*/conf; do
    [ -d "$conf" ] && timeout 60 "$EDDY" cluster stop --conf "$conf" >/dev/null 2>&1
  done
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] && continue
    if { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- "$WORK/"; then
      # eddy processes of this run (and ZooKeeper, whose command line names $WORK/zk).
      case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
        *QuorumPeerMain*) ;;
        *) kill -9 "$pid" 2>/dev/null ;;
      esac
    fi
  done
  scripts/zookeeper.sh stop --dir "$WORK/zk" >/dev/null 2>&1
  if [ -n "$(ls "$WORK"/*/FAILED 2>/dev/null)" ]; then
    for d in "$WORK"/*/; do
      [ -f "$d/FAILED" ] && cp -r "$d/log" "$OUT/failed-$(basename "$d")-log" 2>/dev/null
    done
    cp "$WORK/zk/zookeeper.log" "$OUT/failed-zookeeper.log" 2>/dev/null
  fi
  if [ "$KEEP_LOGS" = 1 ]; then
    for d in "$WORK"/*/log; do
      [ -d "$d" ] && cp -r "$d" "$OUT/logs-$(basename "$(dirname "$d")")-$(date -u +%Y%m%dT%H%M%SZ)"
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
scripts/zookeeper.sh start --port "$ZK_PORT" --dir "$WORK/zk" --tick-ms "$ZK_TICK_MS"
{
  machine
  echo "zookeeper: $(echo srvr | nc -q1 127.0.0.1 "$ZK_PORT" | head -1); zoo.cfg: $(grep -E '^(tickTime|minSessionTimeout|maxSessionTimeout)=' "$WORK/zk/zoo.cfg" | tr '\n' ' ')"
} | tee "$OUT/machine-ha.txt"

python3 - <<'PY'
import csv, json, os, re, signal, socket, statistics, subprocess, sys, time
import urllib.error, urllib.request

EDDY, WORK, OUT = os.environ["EDDY"], os.environ["WORK"], os.environ["OUT"]
SESSIONS = [int(s) for s in os.environ["SESSIONS"].split()]
KILLS, KILLS_LONG = int(os.environ["KILLS"]), int(os.environ["KILLS_LONG"])
SUPERVISOR = os.environ["SUPERVISOR"] == "on"
STOP = os.environ["SIGNAL"] == "stop"
ZK = f"127.0.0.1:{os.environ['ZK_PORT']}"
TERMINAL = ("FINISHED", "FAILED", "CANCELED")
STAMP = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
SUMMARY = []


def emit(line=""):
    print(line, flush=True)
    SUMMARY.append(line)


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


def http(addr, path, timeout=1.0):
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def alive(pid):
    try:
        st = open(f"/proc/{pid}/stat").read().split()
        return st[2] != "Z"
    except OSError:
        return False


def all_tasks_running(j):
    vs = j.get("vertices") or []
    return j.get("state") == "RUNNING" and vs and all(
        v["tasks"]["RUNNING"] == v["parallelism"] for v in vs)


class Failed(Exception):
    pass


class HaCluster:
    def __init__(self, name, session_s):
        self.name = name
        self.dir = os.path.join(WORK, name)
        self.conf = os.path.join(self.dir, "conf")
        self.log = os.path.join(self.dir, "log")
        os.makedirs(self.conf, exist_ok=True)
        self.ports = [free_port() for _ in range(3)]
        self.masters = [f"127.0.0.1:{p}" for p in self.ports]
        self.keys = {
            "high-availability.type": "zookeeper",
            "high-availability.zookeeper.quorum": ZK,
            "high-availability.storageDir": os.path.join(self.dir, "ha-storage"),
            "high-availability.zookeeper.path.root": "/eddy-bench",
            "high-availability.cluster-id": f"/{name}-{STAMP}",
            "high-availability.zookeeper.client.session-timeout": f"{session_s} s",
            "high-availability.zookeeper.client.connection-timeout": "5 s",
            "high-availability.jobmanager.port": "0",
            "cluster.jobmanager.restart-attempts": "1000" if SUPERVISOR else "0",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": "2",
            "parallelism.default": "2",
            "execution.checkpointing.interval": "500 ms",
            "execution.checkpointing.dir": os.path.join(self.dir, "checkpoints"),
            "state.checkpoints.num-retained": "2",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "unlimited",
            "restart-strategy.fixed-delay.delay": "100 ms",
            "heartbeat.interval": "1 s",
            "heartbeat.timeout": "5 s",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "env.log.dir": self.log,
        }
        if os.environ.get("TLS_DIR"):
            d = os.environ["TLS_DIR"]
            self.keys.update({
                "security.ssl.internal.enabled": "true",
                "security.ssl.internal.cert": os.path.join(d, "cert.pem"),
                "security.ssl.internal.key": os.path.join(d, "key.pem"),
                "security.ssl.internal.trust-cert": os.path.join(d, "ca.pem"),
            })
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in self.keys.items())
        with open(os.path.join(self.conf, "masters"), "w") as f:
            f.writelines(f"{m}\n" for m in self.masters)
        with open(os.path.join(self.conf, "workers"), "w") as f:
            f.write("localhost\n" * 3)
        self.own = {}  # index -> Popen of JobManagers this script restarted (supervisor off)

    def eddy(self, *args, timeout=60):
        return subprocess.run([EDDY, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "EDDY_LOG": "info"})

    def fail(self, why):
        open(os.path.join(self.dir, "FAILED"), "w").write(why + "\n")
        raise Failed(why)

    def start(self):
        t0 = now_ms()
        r = self.eddy("cluster", "start", "--conf", self.conf)
        wall = now_ms() - t0
        if r.returncode != 0:
            self.fail(f"cluster start failed: {r.stderr.strip()}")
        print(f"  cluster start: {wall:.0f} ms wall | {r.stdout.strip()}", flush=True)
        return wall

    def stop(self):
        for p in self.own.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        self.eddy("cluster", "stop", "--conf", self.conf, timeout=90)

    def jm_pid(self, i):
        if i in self.own:
            return self.own[i].pid
        try:
            return int(open(os.path.join(self.log, f"eddy-jobmanager-{i}.pid")).readline())
        except (OSError, ValueError):
            return None

    def roles(self, timeout=0.5):
        """index -> 'leader' (200 on /overview), 'standby' (503) or None."""
        out = {}
        for i, m in enumerate(self.masters):
            code, _ = http(m, "/overview", timeout)
            out[i] = {200: "leader", 503: "standby"}.get(code)
        return out

    def wait(self, what, limit_s, probe, every=0.005):
        deadline = time.time() + limit_s
        while True:
            v = probe()
            if v:
                return v
            if time.time() > deadline:
                self.fail(f"gave up after {limit_s} s waiting for {what}")
            time.sleep(every)

    def tail(self, n=25):
        out = []
        for f in sorted(os.listdir(self.log)):
            if f.endswith(".log"):
                lines = open(os.path.join(self.log, f), errors="replace").read().splitlines()
                out.append(f"--- {f}")
                out.extend(lines[-n:])
        return "\n".join(out)

    def restart_jobmanager(self, i):
        log = open(os.path.join(self.log, f"eddy-jobmanager-{i}-restarted.log"), "a")
        p = subprocess.Popen([EDDY, "jobmanager", "--conf", self.conf, "-D", f"rest.port={self.ports[i]}",
                              "-D", "rest.address=127.0.0.1"], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, start_new_session=True, env={**os.environ, "EDDY_LOG": "info"})
        old = self.own.pop(i, None)
        if old:
            old.wait()
        self.own[i] = p


ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def log_event_ms(c, i, needle, after_ms, role="jobmanager"):
    """The first time (ms since epoch) at or after after_ms at which JobManager i (or its
    supervisor, role="supervisor") logged needle."""
    import datetime as dt
    for f in (f"eddy-{role}-{i}.log", f"eddy-{role}-{i}-restarted.log"):
        try:
            lines = open(os.path.join(c.log, f), errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            if needle not in line:
                continue
            m = STAMP_RE.match(ANSI.sub("", line).strip())
            if not m:
                continue
            t = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc).timestamp() * 1000
            if t >= after_ms - 1:
                return t
    return None


def steady(c, jid, after_ms):
    """One leader, two standbys (all 3 JobManager processes alive), the job RUNNING with every
    task on the leader, 3 TaskManagers registered, a checkpoint triggered after after_ms, and
    at least 1 s since after_ms."""
    def probe():
        r = c.roles()
        leaders = [i for i, x in r.items() if x == "leader"]
        if len(leaders) != 1 or sum(1 for x in r.values() if x == "standby") != 2:
            return None
        if not all(c.jm_pid(i) and alive(c.jm_pid(i)) for i in range(3)):
            return None
        m = c.masters[leaders[0]]
        _, j = http(m, f"/jobs/{jid}")
        _, d = http(m, f"/jobs/{jid}/eddy-details")
        _, ov = http(m, "/overview")
        if not j or not d or not ov:
            return None
        if j.get("state") in TERMINAL:
            c.fail(f"job {jid} ended: {j['state']}")
        lc = (d.get("checkpoints") or {}).get("latest_completed") or {}
        if (all_tasks_running(j) and ov.get("taskmanagers") == 3
                and lc.get("trigger_timestamp_ms", 0) > after_ms and now_ms() > after_ms + 1000):
            return leaders[0], j
        return None
    return c.wait("a steady HA cluster (1 leader, 2 standbys, job RUNNING, new checkpoint)", 180, probe, 0.05)


def run_session(session_s, kills):
    name = f"ha-s{session_s}-sup{'on' if SUPERVISOR else 'off'}{'-sigstop' if STOP else ''}-tls{'on' if os.environ.get('TLS_DIR') else 'off'}"
    c = HaCluster(name, session_s)
    rows = []
    print(f"== {name}: session timeout {session_s} s, load {load1()}", flush=True)
    limit = max(60, 3 * session_s + 30)
    start_ms = None
    try:
        start_ms = c.start()
        leader = [i for i, x in c.roles().items() if x == "leader"][0]
        r = c.eddy("run", "sequence", "--keys", "100", "--per-key", "100000000", "--rate", "2000",
                   "--output", os.path.join(c.dir, "out"), "-p", "4", "-d", "-m", c.masters[leader])
        if r.returncode != 0:
            c.fail(f"eddy run failed: {r.stderr.strip()}")
        jid = r.stdout.strip().splitlines()[-1]
        # The negotiated session timeout, as the JobManagers log it.
        neg = set(re.findall(r"timeout (\d+) ms", open(os.path.join(c.log, "eddy-jobmanager-0.log"), errors="replace").read()))
        print(f"  job {jid}; negotiated ZooKeeper session timeout(s) logged by JobManager 0: {sorted(neg)} ms", flush=True)
        after = 0
        for k in range(kills):
            leader, j0 = steady(c, jid, after)
            restarts0 = j0["restarts"]
            pid = c.jm_pid(leader)
            la = load1()
            t_kill = now_ms()
            os.kill(pid, signal.SIGSTOP if STOP else signal.SIGKILL)
            t_rest = new_leader = None
            while True:
                if new_leader is None:
                    for i, m in enumerate(c.masters):
                        if STOP and i == leader:
                            continue  # paused: its REST port accepts but never answers
                        code, _ = http(m, "/overview", 0.5)
                        if code == 200:
                            t_rest, new_leader = now_ms(), i
                            break
                if new_leader is not None:
                    _, j = http(c.masters[new_leader], f"/jobs/{jid}", 0.5)
                    if j and j.get("state") in TERMINAL:
                        c.fail(f"job {jid} ended after leader kill {k}: {j['state']}\n{c.tail()}")
                    if j and j.get("state") == "RUNNING" and j["timestamps"]["RUNNING"] >= int(t_kill) \
                            and all_tasks_running(j):
                        break
                    if j is None and http(c.masters[new_leader], "/overview", 0.5)[0] != 200:
                        new_leader = None  # it lost leadership again: look again
                if now_ms() - t_kill > limit * 1000:
                    emit(f"FAILED: {name} kill {k}: no leader running the job within {limit} s "
                         f"(leader REST {'at +%.0f ms' % (t_rest - t_kill) if t_rest else 'never'})")
                    print(c.tail(), file=sys.stderr)
                    c.fail("job not RUNNING again")
                time.sleep(0.005)
            t_seen = now_ms()
            _, d = http(c.masters[new_leader], f"/jobs/{jid}/eddy-details", 1.0)
            ts = j["timestamps"]
            granted = log_event_ms(c, new_leader, "granted leadership", t_kill)
            closed = log_event_ms(c, leader, "closed ZooKeeper session", t_kill, role="supervisor")
            row = {
                "session_s": session_s, "supervisor": "on" if SUPERVISOR else "off",
                "signal": "SIGSTOP" if STOP else "SIGKILL", "kill": k,
                "old_leader": leader, "new_leader": new_leader, "load1": la,
                "session_closed_ms": round(closed - t_kill, 1) if closed else "",
                "granted_ms": round(granted - t_kill, 1) if granted else "",
                "rest_ms": round(t_rest - t_kill, 1),
                "running_ms": round(ts["RUNNING"] - t_kill, 1),
                "created_ms": round(ts["CREATED"] - t_kill, 1) if ts.get("CREATED", 0) >= int(t_kill) else "",
                "observed_ms": round(t_seen - t_kill, 1),
                "details_status": (d or {}).get("status"),
                "restored_checkpoint": (((d or {}).get("checkpoints") or {}).get("latest_restored") or {}).get("id"),
                "restarts_before": restarts0, "restarts_after": j.get("restarts"),
            }
            rows.append(row)
            print(f"  kill {k}: leader {leader} (pid {pid}) -> new leader {new_leader}: session closed by the supervisor "
                  f"(its log) at +{row['session_closed_ms']} ms, leadership granted (its log) at "
                  f"+{row['granted_ms']} ms, REST 200 at "
                  f"+{row['rest_ms']:.0f} ms, timestamps.RUNNING at +{row['running_ms']:.0f} ms, "
                  f"all tasks RUNNING seen at +{row['observed_ms']:.0f} ms, restored checkpoint {row['restored_checkpoint']}, "
                  f"load {la}", flush=True)
            after = ts["RUNNING"]
            if STOP:
                os.kill(pid, signal.SIGCONT)  # it finds itself deposed and rejoins as a standby
            elif not SUPERVISOR:
                c.restart_jobmanager(leader)
    except Failed as e:
        emit(f"FAILED {name}: {e}")
    finally:
        c.stop()
    if rows:
        path = os.path.join(OUT, f"ha-failover-{STAMP}.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            if new:
                w.writeheader()
            w.writerows(rows)
    return name, rows, start_ms


results = []
for s in SESSIONS:
    results.append(run_session(s, KILLS if s <= 5 else KILLS_LONG))

emit(f"### JobManager leader {'SIGSTOP' if STOP else 'kill -9'} -> new leader serving REST, and -> job RUNNING with all tasks on it, ms")
emit()
emit("| session timeout | supervisor | kills | session closed by the supervisor (log) median | leadership granted (log) median | REST 200 median | REST 200 max | timestamps.RUNNING median | all tasks RUNNING median | min | max | load1 at kills (median, max) | HA `cluster start` |")
emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, rows, start_ms in results:
    if not rows:
        emit(f"| {name} | - | 0 | - | - | - | - | - | - | - | - | - | - |")
        continue
    rest = [r["rest_ms"] for r in rows]
    tsr = [r["running_ms"] for r in rows]
    run = [r["observed_ms"] for r in rows]
    la = [r["load1"] for r in rows]
    gr = [r["granted_ms"] for r in rows if r["granted_ms"] != ""]
    sc = [r["session_closed_ms"] for r in rows if r["session_closed_ms"] != ""]
    emit(f"| {rows[0]['session_s']} s | {rows[0]['supervisor']} | {len(rows)} | "
         f"{(str(round(statistics.median(sc))) + ' (' + str(len(sc)) + ' of ' + str(len(rows)) + ')') if sc else '-'} | "
         f"{statistics.median(gr) if gr else float('nan'):.0f} | {statistics.median(rest):.0f} | "
         f"{max(rest):.0f} | {statistics.median(tsr):.0f} | {statistics.median(run):.0f} | {min(run):.0f} | {max(run):.0f} | "
         f"{statistics.median(la):.2f}, {max(la):.2f} | {start_ms:.0f} ms |")
emit()
with open(os.path.join(OUT, f"ha-summary-{STAMP}.md"), "w") as f:
    f.write(open(os.path.join(OUT, "machine-ha.txt")).read() + "\n" + "\n".join(SUMMARY) + "\n")
print(f"summary: {OUT}/ha-summary-{STAMP}.md")
PY
echo "end: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), uptime: $(uptime)"
