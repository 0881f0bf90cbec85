#!/usr/bin/env python3
"""Eddy's chaos campaign (issue 9, part 1): runs after runs of a real HA cluster under seeded
faults, each judged by oracles. See docs/chaos.md for the fault model and the oracles.

    scripts/chaos.sh [--minutes N | --faults N] [--seed S] [--out DIR]
                     [--faults-per-run K] [--gap-ms A:B] [--recovery-limit S] [--strict-stuck]
    scripts/chaos.sh --run-seed S --mode standalone|active [--faults-per-run K] [--out DIR]
                                  (one run, exactly as the campaign ran it: the reproducer)

The binary is $EDDY_BIN (default target/release/eddy under $CARGO_TARGET_DIR or ./target).
Exit 0 only if every oracle held in every run; the last line of stdout is
`chaos: faults=N runs=R lost=L duplicated=D retracted=X split_brain=B failed_runs=F`.
"""

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import datetime as dt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cl  # noqa: E402
import faults as fl  # noqa: E402
import oracles  # noqa: E402

SEQ_KEYS = 10
SEQ_RATE = 1000          # records/s of the sequence job
TSW_CARS = 8
TSW_RATE = 400           # events/s of the windowed job
TSW_WINDOW_MS = 1000
PARALLELISM = 2
POLL_S = 0.2
# Slowest detection bound (heartbeat timeout, session) + 2 s: longer without a new checkpoint is stuck.
STUCK_BOUND_S = cl.DETECTION_BOUND_S + 2.0
CYCLE_ESTIMATE_S = 4.5   # a fault + its recovery + the gap, to size the jobs of a run


def now_text(t=None):
    return dt.datetime.fromtimestamp(t or time.time(), dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def default_bin():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(cl.ROOT, "target")
    return os.path.join(target, "release", "eddy")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="scripts/chaos.sh", description=__doc__.split("\n\n")[0])
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="run faults for this long (new runs start until then)")
    budget.add_argument("--faults", type=int, help="inject this many faults in total")
    ap.add_argument("--seed", type=int, default=None, help="campaign seed (default: random, printed)")
    ap.add_argument("--out", default=None, help="where runs, logs and the report go (default: a new temp dir)")
    ap.add_argument("--faults-per-run", type=int, default=15, help="faults per run (default 15)")
    ap.add_argument("--gap-ms", default="500:1500", help="pause between a recovery and the next fault, A:B ms (default 500:1500)")
    ap.add_argument("--recovery-limit", type=float, default=60.0,
                    help="seconds a fault may take until the jobs run again; beyond: the run fails (default 60)")
    ap.add_argument("--strict-stuck", action="store_true",
                    help="a stuck period (see docs/chaos.md) fails the run, not only reported")
    ap.add_argument("--run-seed", type=int, default=None, help="reproduce one run of a campaign")
    ap.add_argument("--mode", choices=["standalone", "active"], default=None, help="with --run-seed: its resource manager mode")
    ap.add_argument("--keep", action="store_true", help="keep the output and logs of runs that passed (default: kept only for failed runs)")
    a = ap.parse_args(argv)
    if a.faults is not None and a.faults < 1:
        ap.error(f"--faults {a.faults}: expected an integer >= 1")
    if a.minutes is not None and a.minutes <= 0:
        ap.error(f"--minutes {a.minutes}: expected a number > 0")
    if a.faults_per_run < 1:
        ap.error(f"--faults-per-run {a.faults_per_run}: expected an integer >= 1")
    try:
        lo, hi = (int(x) for x in a.gap_ms.split(":"))
        if not 0 <= lo <= hi:
            raise ValueError
    except ValueError:
        ap.error(f"--gap-ms {a.gap_ms}: expected A:B with 0 <= A <= B (milliseconds)")
    a.gap = (lo / 1000, hi / 1000)
    if (a.run_seed is None) != (a.mode is None):
        ap.error("--run-seed and --mode go together (the reproducer of one run)")
    if a.run_seed is not None and (a.minutes is not None or a.faults is not None):
        ap.error("--run-seed runs one run of --faults-per-run faults: drop --minutes/--faults")
    if a.minutes is None and a.faults is None and a.run_seed is None:
        a.faults = 30
    return a


class Campaign:
    def __init__(self, args, eddy_bin, out):
        self.a = args
        self.eddy = eddy_bin
        self.out = out
        self.goldens = {}
        self.runs = []
        self.report_lines = []

    def say(self, text):
        print(text, flush=True)

    def golden(self, events):
        """The windowed job's output of a fault-free run (eddy local), once per size."""
        if events not in self.goldens:
            d = tempfile.mkdtemp(prefix="golden-", dir=self.out)
            outd = os.path.join(d, "out")
            r = subprocess.run([self.eddy, "local", "top-speed-windowing", "--cars", str(TSW_CARS),
                                "--events", str(events), "--rate", "0", "--window-ms", str(TSW_WINDOW_MS),
                                "--output", outd, "-p", str(PARALLELISM)],
                               capture_output=True, text=True, timeout=300, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"golden run of top-speed-windowing failed: {r.stderr.strip()}")
            self.goldens[events] = oracles.committed_lines(outd)
        return self.goldens[events]

    def reproducer(self, seed, mode, nfaults):
        return (f"scripts/chaos.sh --run-seed {seed} --mode {mode} --faults-per-run {nfaults} "
                f"--gap-ms {int(self.a.gap[0] * 1000)}:{int(self.a.gap[1] * 1000)}")


class RunOver(Exception):
    """A run ends early (a finding made going on pointless); it is still judged."""


class Run:
    """One run: a fresh cluster, two jobs, `nfaults` seeded faults, then the oracles."""

    def __init__(self, campaign, index, seed, mode, nfaults):
        self.cp = campaign
        self.index = index
        self.seed = seed
        self.mode = mode
        self.nfaults = nfaults
        self.dir = os.path.join(campaign.out, f"run-{index:03d}-{mode}-{seed}")
        os.makedirs(self.dir, exist_ok=True)
        self.events_path = os.path.join(self.dir, "events.log")
        self.faults = []
        self.findings = []   # texts; each fails the run
        self.notes = []      # texts; reported, do not fail the run
        self.stuck = []
        self.lost = self.dup = self.retracted = self.split = 0
        self.jobs = {}       # name -> dict(id, out, status, healthy_since...)
        self.state_lock = threading.Lock()
        self.stop_poll = threading.Event()
        self.pauses = []     # (jm index, stop time, cont time)
        self.rest_dual = 0
        self.quiet_since = None  # when the last fault recovered; None while a fault is active

    def log(self, text):
        line = f"{now_text()} {text}"
        with open(self.events_path, "a") as f:
            f.write(line + "\n")

    # ---- polling ------------------------------------------------------------------------

    def poll_loop(self, c, files):
        while not self.stop_poll.is_set():
            try:
                self.poll_once(c, files)
            except Exception as e:  # the poller must not die; say why it missed a beat
                self.log(f"poller: {e!r}")
            self.stop_poll.wait(POLL_S)

    def poll_once(self, c, files):
        files.poll()
        roles = c.roles()
        leaders = [i for i, code in roles if code == 200]
        if len(leaders) > 1:
            self.rest_dual += 1
            self.log(f"two JobManagers answer as leader at once: {leaders}")
        if not leaders:
            return
        m = c.masters[leaders[0]]
        t = time.time()
        for name, j in self.jobs.items():
            code, d = cl.http(m, "GET", f"/jobs/{j['id']}")
            if code != 200 or not isinstance(d, dict):
                if code == 404 and j["status"] in ("FINISHED",):
                    j["vanished"] = True
                continue
            status = d.get("state") or d.get("status")
            vs = d.get("vertices") or []
            all_running = status == "RUNNING" and bool(vs) and all(
                (v.get("tasks") or {}).get("RUNNING") == v.get("parallelism") for v in vs)
            _, ck = cl.http(m, "GET", f"/jobs/{j['id']}/checkpoints")
            ck = ck if isinstance(ck, dict) else {}
            latest = (ck.get("latest") or {}).get("completed") or {}
            end_ms = latest.get("end_timestamp") or 0
            with self.state_lock:
                if status != j["status"]:
                    self.log(f"job {name} {j['id']}: {j['status']} -> {status} (leader JobManager {leaders[0]})")
                    j["status"] = status
                    if status in ("FAILED", "CANCELED"):
                        j["bad_end"] = status
                j["all_running"] = all_running
                prev = j.get("last_ckpt_end", 0)
                j["last_ckpt_end"] = max(prev, end_ms / 1000.0) if all_running else prev
                if j["last_ckpt_end"] > prev:
                    j["progress_t"] = t
                # Between faults (none active, the last one recovered): no new checkpoint for
                # longer than the bound is a stuck period.
                quiet = self.quiet_since
                if quiet is not None and not self.ended(j):
                    since = max(quiet, j.get("progress_t", quiet))
                    if t - since > STUCK_BOUND_S and j.get("stuck_reported") != since:
                        j["stuck_reported"] = since
                        text = (f"job {name}: no checkpoint completed for {t - since:.1f} s between faults "
                                f"(since {now_text(since)}; status {status}, all tasks RUNNING: {all_running})")
                        self.log(text)
                        self.stuck.append(text)

    def ended(self, j):
        return j["status"] in ("FINISHED", "FAILED", "CANCELED")

    def healthy_after(self, t0):
        """Every job either ended, or runs all its tasks with a checkpoint completed after t0."""
        with self.state_lock:
            return all(self.ended(j) or (j.get("all_running") and j.get("last_ckpt_end", 0) > t0)
                       for j in self.jobs.values())

    # ---- the run --------------------------------------------------------------------------

    def execute(self):
        a = self.cp.a
        rng = random.Random(self.seed)
        c = cl.Cluster(self.dir, self.mode, self.cp.eddy, self.log)
        self.cluster = c
        started = time.time()
        dur = self.nfaults * CYCLE_ESTIMATE_S + 5
        per_key = int(math.ceil(SEQ_RATE * dur / SEQ_KEYS))
        events = int(TSW_RATE * dur) // (TSW_CARS * 10) * (TSW_CARS * 10)
        golden = self.cp.golden(events)
        files = None
        poller = None
        left = []
        try:
            c.start()
            kinds = [k for k in fl.KINDS if k != "ckpt_full" or c.tmpfs]
            if not c.can_mount():
                kinds = [k for k in kinds if k != "ckpt_readonly"]
            seq_out = os.path.join(self.dir, "out-sequence")
            tsw_out = os.path.join(self.dir, "out-windows")
            self.jobs["sequence"] = {"id": c.submit(["sequence", "--keys", str(SEQ_KEYS), "--per-key", str(per_key),
                                                     "--rate", str(SEQ_RATE), "--output", seq_out, "-p", str(PARALLELISM)]),
                                     "out": seq_out, "status": "?"}
            self.jobs["windows"] = {"id": c.submit(["top-speed-windowing", "--cars", str(TSW_CARS), "--events", str(events),
                                                    "--rate", str(TSW_RATE), "--window-ms", str(TSW_WINDOW_MS),
                                                    "--output", tsw_out, "-p", str(PARALLELISM)]),
                                    "out": tsw_out, "status": "?"}
            self.log(f"jobs: {json.dumps({k: v['id'] for k, v in self.jobs.items()})}")
            files = oracles.CommittedFiles([seq_out, tsw_out])
            poller = threading.Thread(target=self.poll_loop, args=(c, files), daemon=True)
            poller.start()
            if not self.wait_until(lambda: self.healthy_after(started), 60):
                self.findings.append("the jobs did not run (all tasks RUNNING, a checkpoint completed) within 60 s of submission")
                raise RunOver()
            inj = fl.Injector(c, self.log)
            for k in range(self.nfaults):
                kind, params = fl.draw(rng, kinds)
                gap = rng.uniform(*a.gap)
                if all(self.ended(j) for j in self.jobs.values()):
                    self.log(f"the jobs ended; {self.nfaults - k} scheduled faults not injected")
                    break
                time.sleep(gap)
                self.log(f"fault {k + 1}/{self.nfaults}: {kind} {json.dumps(params)}")
                self.quiet_since = None
                rec = inj.apply(kind, params)
                for p in rec["parts"]:
                    for pid in p.get("stopped", []):
                        jm = next((i for i in range(3) if c.jobmanager_pid(i) == pid), None)
                        if jm is not None:
                            self.pauses.append((jm, p["start"], p["healed"]))
                self.log(f"fault {k + 1} applied at {now_text(rec['start'])}, healed at {now_text(rec['healed'])}: {rec['target']}")
                ok = self.wait_until(lambda: self.healthy_after(rec["healed"]), a.recovery_limit)
                t = time.time()
                self.quiet_since = t if ok else None
                rec["recovered"] = t if ok else None
                rec["recovery_ms"] = round((t - rec["start"]) * 1000) if ok else None
                rec["after_heal_ms"] = round((t - rec["healed"]) * 1000) if ok else None
                self.faults.append(rec)
                self.log(f"fault {k + 1}: " + (f"jobs RUNNING with a new checkpoint {rec['recovery_ms']} ms after the fault "
                                               f"({rec['after_heal_ms']} ms after it healed)" if ok else
                                               f"jobs NOT running again within {a.recovery_limit} s"))
                if not ok:
                    self.findings.append(f"fault {k + 1} ({kind}: {rec['target']}): jobs not RUNNING with a completed "
                                         f"checkpoint within {a.recovery_limit} s after it healed; states: {self.job_states()}")
                    raise RunOver()
                if rec["after_heal_ms"] / 1000 > STUCK_BOUND_S:
                    text = (f"fault {k + 1} ({kind}: {rec['target']}): stuck {rec['after_heal_ms'] / 1000:.1f} s after it "
                            f"healed (bound: slowest detection bound {cl.DETECTION_BOUND_S:.0f} s + 2 s)")
                    self.stuck.append(text)
            # The jobs run to their end.
            remaining = max(60.0, dur * 2)
            if not self.wait_until(lambda: all(self.ended(j) for j in self.jobs.values()), remaining):
                self.findings.append(f"the jobs did not end within {remaining:.0f} s after the last fault: {self.job_states()}")
        except RunOver:
            pass  # the finding is recorded; the oracles below judge what the run left
        except Exception as e:
            self.findings.append(f"the run could not go on: {e}")
        finally:
            self.stop_poll.set()
            if poller:
                poller.join(timeout=10)
            if files:
                files.poll()
            left = c.stop()
        self.judge(files, golden, per_key, left, c)

    def wait_until(self, cond, limit):
        deadline = time.time() + limit
        while time.time() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def job_states(self):
        with self.state_lock:
            return {n: (j["status"], "all tasks RUNNING" if j.get("all_running") else "not all tasks RUNNING")
                    for n, j in self.jobs.items()}

    def judge(self, files, golden, per_key, left, c):
        for name, j in self.jobs.items():
            if j.get("bad_end"):
                self.findings.append(f"job {name} {j['id']} ended {j['bad_end']}")
            elif j["status"] != "FINISHED":
                self.findings.append(f"job {name} {j['id']} did not finish (last seen {j['status']})")
            if j.get("vanished"):
                self.notes.append(f"job {name} {j['id']}: FINISHED, then 404 on the leader (a finished job vanished after a leader change)")
        # A job that did not finish still must not have committed anything twice (or wrong);
        # only what is missing is not judged then.
        if "sequence" in self.jobs:
            done = self.jobs["sequence"]["status"] == "FINISHED"
            lost, dup, detail = oracles.sequence_witness(self.jobs["sequence"]["out"], SEQ_KEYS, per_key)
            lost = lost if done else 0
            self.log(f"witness of sequence{'' if done else ' (not finished: missing records not counted)'}: {detail}")
            self.lost += lost
            self.dup += dup
            if lost or dup:
                self.findings.append(f"exactly-once witness BROKEN: {detail}")
        if "windows" in self.jobs:
            done = self.jobs["windows"]["status"] == "FINISHED"
            lost, dup, detail = oracles.compare_golden(self.jobs["windows"]["out"], golden)
            lost = lost if done else 0
            self.log(f"windowed job vs golden{'' if done else ' (not finished: missing lines not counted)'}: {detail}")
            self.lost += lost
            self.dup += dup
            if lost or dup:
                self.findings.append(f"windowed output differs from the fault-free run: {detail}")
        if files:
            groups = {}
            for path, what, lines in files.violations:
                groups.setdefault((os.path.dirname(path), what), []).append((os.path.basename(path), lines))
            for (d, what), items in sorted(groups.items()):
                names = ", ".join(n for n, _ in sorted(items)[:3]) + (", ..." if len(items) > 3 else "")
                self.findings.append(f"{len(items)} committed file(s) in {d} {what} ({sum(l for _, l in items)} lines): {names}")
            self.retracted = files.retracted()
        if left:
            self.findings.append(f"{len(left)} process(es) left behind after cluster stop: {'; '.join(left)}")
        logs = [(i, os.path.join(c.logdir, f"eddy-jobmanager-{i}.log")) for i in range(len(c.masters))]
        violations, ambiguous = oracles.split_brain(logs, self.pauses)
        self.split = len(violations)
        for v in violations:
            self.findings.append(f"split brain: {v}")
        for v in ambiguous:
            self.notes.append(f"possible overlap (write logged right after a pause of that JobManager): {v}")
        if self.rest_dual:
            self.notes.append(f"{self.rest_dual} polls saw two JobManagers answer GET /overview with 200")
        if self.cp.a.strict_stuck:
            self.findings.extend(self.stuck)

    @property
    def failed(self):
        return bool(self.findings)


def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def report(cp, wall_s):
    runs = cp.runs
    faults = [f for r in runs for f in r.faults]
    by_kind = {}
    for f in faults:
        by_kind.setdefault(f["kind"], []).append(f)
    lines = []
    lines.append(f"# Chaos campaign {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append("")
    lines.append(f"seed {cp.a.seed}, binary {cp.eddy}, {len(runs)} runs, {len(faults)} faults, {wall_s / 60:.1f} min, "
                 f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    lines.append("")
    lines.append("| fault kind | count | recovery median ms | p99 ms | max ms | after heal median ms | max ms |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for kind in fl.KINDS:
        fs = by_kind.get(kind, [])
        if not fs:
            continue
        rec = [f["recovery_ms"] for f in fs if f.get("recovery_ms") is not None]
        aft = [f["after_heal_ms"] for f in fs if f.get("after_heal_ms") is not None]
        cell = lambda v: "-" if v is None else str(v)  # noqa: E731
        med = lambda v: round(statistics.median(v)) if v else None  # noqa: E731
        lines.append(f"| {kind} | {len(fs)} | {cell(med(rec))} | {cell(pct(rec, 0.99))} | "
                     f"{cell(max(rec) if rec else None)} | {cell(med(aft))} | {cell(max(aft) if aft else None)} |")
    lines.append("")
    lines.append("Recovery: from the fault (its start) until every job runs all its tasks and completed a checkpoint "
                 "after the fault healed. After heal: the same, from the end of the fault.")
    lines.append("")
    lines.append("| run | mode | seed | faults | result |")
    lines.append("|---|---|---|---:|---|")
    for r in runs:
        lines.append(f"| {r.index} | {r.mode} | {r.seed} | {len(r.faults)} | {'FAILED' if r.failed else 'ok'} |")
    failed = [r for r in runs if r.failed]
    if failed:
        lines.append("")
        lines.append("## Failed runs")
        for r in failed:
            lines.append("")
            lines.append(f"- run {r.index} ({r.mode}, seed {r.seed}), logs in {r.dir}")
            lines.append(f"  reproduce: `{cp.reproducer(r.seed, r.mode, r.nfaults)}`")
            for f in r.findings:
                lines.append(f"  - {f}")
    notes = [(r, n) for r in runs for n in r.stuck + r.notes]
    if notes:
        lines.append("")
        lines.append("## Findings that do not fail a run (stuck periods, observations)")
        for r, n in notes:
            lines.append(f"- run {r.index} ({r.mode}, seed {r.seed}; `{cp.reproducer(r.seed, r.mode, r.nfaults)}`): {n}")
    return lines


def main(argv):
    a = parse_args(argv)
    eddy = os.environ.get("EDDY_BIN") or default_bin()
    if not os.access(eddy, os.X_OK):
        print(f"chaos: the eddy binary '{eddy}' does not exist or is not executable "
              f"(build it: cargo build --release -p eddy, or set EDDY_BIN)", file=sys.stderr)
        return 2
    import test_oracles
    ok, text = test_oracles.run()
    if not ok:
        print(f"chaos: the oracles' self-tests failed; not running a campaign with broken oracles\n{text}", file=sys.stderr)
        return 2
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    out = a.out or tempfile.mkdtemp(prefix="eddy-chaos-")
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    cp = Campaign(a, eddy, out)
    cp.say(f"chaos: seed {a.seed}, binary {eddy}, output in {out}")
    current = {"run": None}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.time()
    rng = random.Random(a.seed)
    total = 0
    interrupted = False
    try:
        index = 0
        while True:
            if a.run_seed is not None:
                if index == 1:
                    break
                seed, mode, n = a.run_seed, a.mode, a.faults_per_run
            else:
                if a.faults is not None and total >= a.faults:
                    break
                if a.minutes is not None and time.time() - t0 >= a.minutes * 60:
                    break
                seed = rng.randrange(1 << 31)
                mode = "standalone" if index % 2 == 0 else "active"
                n = a.faults_per_run if a.faults is None else min(a.faults_per_run, a.faults - total)
            index += 1
            run = Run(cp, index, seed, mode, n)
            current["run"] = run
            cp.say(f"chaos: run {index} ({mode}, seed {seed}, {n} faults) in {run.dir}")
            run.execute()
            cp.runs.append(run)
            total += len(run.faults)
            kinds = {}
            for f in run.faults:
                kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
            cp.say(f"chaos: run {index} {'FAILED' if run.failed else 'ok'}: {len(run.faults)} faults {kinds}, "
                   f"lost={run.lost} duplicated={run.dup} retracted={run.retracted} split_brain={run.split}"
                   + (f", {len(run.stuck)} stuck period(s)" if run.stuck else ""))
            for f in run.findings:
                cp.say(f"chaos:   {f}")
            if run.failed:
                cp.say(f"chaos:   reproduce: {cp.reproducer(seed, mode, n)}")
            elif not a.keep:
                for sub in ("out-sequence", "out-windows"):
                    subprocess.run(["rm", "-rf", os.path.join(run.dir, sub)], check=False)
            if len(run.faults) == 0 and not run.failed:
                cp.say("chaos: a run injected no fault; stopping (are the jobs sized for the machine?)")
                break
    except KeyboardInterrupt as e:
        interrupted = True
        cp.say(f"chaos: interrupted ({e}); stopping the current run's cluster")
        r = current["run"]
        if r is not None and r not in cp.runs and getattr(r, "cluster", None):
            r.stop_poll.set()
            r.cluster.stop()
    lines = report(cp, time.time() - t0)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"seed": a.seed, "runs": [{"index": r.index, "mode": r.mode, "seed": r.seed, "faults": r.faults,
                                             "findings": r.findings, "stuck": r.stuck, "notes": r.notes,
                                             "lost": r.lost, "duplicated": r.dup, "retracted": r.retracted,
                                             "split_brain": r.split} for r in cp.runs]}, f, indent=1, default=str)
    for line in lines:
        print(line)
    runs = cp.runs
    faults = sum(len(r.faults) for r in runs)
    failed = sum(r.failed for r in runs) + (1 if interrupted else 0)
    print(f"chaos: faults={faults} runs={len(runs)} lost={sum(r.lost for r in runs)} "
          f"duplicated={sum(r.dup for r in runs)} retracted={sum(r.retracted for r in runs)} "
          f"split_brain={sum(r.split for r in runs)} failed_runs={failed}", flush=True)
    return 0 if failed == 0 and runs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
