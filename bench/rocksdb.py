#!/usr/bin/env python3
"""RocksDB figures of issue 12 (bench/RESULTS.md, *RocksDB: records/s, checkpoint size full vs
incremental, restore time*).

    bench/rocksdb.py throughput  EDDY [--runs 3]
    bench/rocksdb.py checkpoints EDDY [--keys 10000000] [--interval-s 10] [--checkpoints 6]
    bench/rocksdb.py restore     EDDY [--keys 100000,1000000] [--configs all] [--failures 2]

EDDY is a release binary (e.g. /var/tmp/eddy-base/eddy-merge or target/release/eddy); it is
copied into the work directory first, so a rebuild cannot change it under a run. One command per
table; each prints a Markdown table (and the machine, date and load) to stdout and keeps the
logs and one JSON line per run under bench/out/rocksdb/<table>/. Every run is `eddy local`
(JobManager and TaskManagers in one process, real TCP on 127.0.0.1), bounded by a timeout and
killed by its PID on timeout or interrupt; the S3 server (moto_server from $EDDY_VENV, default
/var/tmp/eddy-venv) listens on a free port of 127.0.0.1 and is killed by its PID at the end.

throughput   `rows-groupby` (keyed COUNT(*) + SUM(value), `ValueState<(u64, i64)>`, discarding
             sink) with `state.backend.type: rocksdb`, -p 2 on 1 TaskManager x 2 slots.
             10 k keys: the whole job, 10^8 records, a checkpoint every second (incremental);
             records / job duration (--json `duration_ms`) and records / CPU s of the process
             (user + sys, wait4). 10^7 keys: the state is loaded once (`--records 0`, unbounded,
             cancelled after the checkpoint that follows the 10^7th record, retained); each
             measured run resumes from it, warms up, then records/s and records per CPU s
             (/proc/PID/stat) over a window, with a checkpoint every 10 s (incremental): every
             record is an update of a key in RocksDB. Rounds interleave the two variants.
checkpoints  `sequence --keys K` with rocksdb, -p 2: a load phase (see load_sequence; or
             --load-from a checkpoint it left), then per mode (full, incremental) a job that
             resumes from it (`execution.state-recovery.path`) and updates 1 % of the keys per
             checkpoint interval (--rate K/100/interval: the source walks the keys round-robin,
             so an interval's records are distinct keys) for N checkpoints, then is cancelled.
             Per checkpoint: state size and duration from the JobManager's checkpoint stats
             (the `checkpoints.history` of the --json summary, the same object as REST
             `/jobs/:id/checkpoints`) and `_metadata`, and the bytes uploaded by that checkpoint:
             a poller copies each `chk-N/_metadata` (JSON) as it appears; uploaded = the files it
             references that no earlier checkpoint of the job referenced (full: all of them).
restore      per state size K: one load phase (load_sequence), then per configuration (snapshot
             kind full|incr x storage dir|s3 x task-local recovery off|on) a job that resumes
             from it, unthrottled, a checkpoint every 2 s; after each of its own completed
             checkpoints (all K keys, in this configuration's kind and storage) the counting
             operator fails (--fail-on-file: a task failure, the TaskManager stays), F times,
             then the job is cancelled. Restore time = the JobManager's recovery timeline
             (--json `recoveries`, as REST `/jobs/:id/recoveries`): failure detected -> every
             subtask RUNNING again (`durations.total`) and its phases; bytes = the TaskManager's
             `restored ... : B bytes of state files from checkpoint storage, L bytes from local
             copies` lines (EDDY_LOG=info) after the failures, summed per recovery.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out", "rocksdb")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A restore of a full (canonical) snapshot writes every key into a fresh RocksDB instance in the
# task's `open`: at 10^7 keys that takes longer than the default heartbeat.timeout (50 s), after
# which the JobMaster fails the task ("did not start within ... (heartbeat.timeout)").
SLOW_RESTORE_HEARTBEAT = "300 s"
FLINK_ROCKSDB_10K = 0.31e6  # rec/s, Flink 2.3, p=2, RocksDB, 10 k keys, this machine (issue 12)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def machine(eddy):
    load = open("/proc/loadavg").read().split()[:3]
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"date {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; binary {eddy}; "
            f"nproc {os.cpu_count()}; cpu {cpu}; load average {' '.join(load)}")


def load1():
    return float(open("/proc/loadavg").read().split()[0])


class Job:
    """One `eddy local JOB ... --json` process. `on_line(job, line)` sees every stderr line."""

    def __init__(self, eddy, name, args, conf, logdir, tag, on_line=None, timeout=600, env=None):
        self.tag = tag
        self.err_path = os.path.join(logdir, tag + ".err")
        self.out_path = os.path.join(logdir, tag + ".out")
        cmd = [eddy, "local", name] + args + ["--json"]
        for k, v in conf.items():
            cmd += ["-D", f"{k}={v}"]
        with open(os.path.join(logdir, tag + ".cmd"), "w") as f:
            f.write(" ".join(cmd) + "\n")
        e = dict(os.environ)
        e.update(env or {})
        self.t0 = time.time()
        self.load_start = load1()
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.PIPE, env=e, text=True, errors="replace")
        self.on_line = on_line
        self.timeout = timeout
        self.timed_out = False
        self.cancelled = False
        self.rusage = None

    def cancel(self):
        """Ctrl-C: `eddy local` cancels the job cleanly and prints its summary."""
        if not self.cancelled and self.proc.poll() is None:
            self.cancelled = True
            self.proc.send_signal(signal.SIGINT)

    def run(self):
        killer = threading.Timer(self.timeout, self._kill)
        killer.start()
        try:
            with open(self.err_path, "w") as err:
                for raw in self.proc.stderr:
                    line = ANSI.sub("", raw.rstrip("\n"))
                    err.write(line + "\n")
                    if self.on_line:
                        self.on_line(self, line)
            _, status, self.rusage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            killer.cancel()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
        self.wall = time.time() - self.t0
        self.summary = {}
        for line in reversed(open(self.out_path).read().splitlines()):
            if line.startswith("{"):
                self.summary = json.loads(line)
                break
        return self

    def _kill(self):
        self.timed_out = True
        try:
            self.proc.kill()  # by PID: the process this object started
        except OSError:
            pass

    @property
    def cpu_s(self):
        return self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else float("nan")

    @property
    def maxrss_mb(self):
        return self.rusage.ru_maxrss / 1024 if self.rusage else float("nan")


def human(s):
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}.get(s[-1], 1.0)
    return float(s[:-1] if s[-1] in "kMG" else s) * mult


SOURCE_OUT = re.compile(r"\| (?:Sequence|Rows) \[[^\]]*\] in \S+ out (\S+)")
CKPT_DONE = re.compile(r"checkpoint (\d+) completed \((\d+) bytes, (\d+) ms\)")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Moto:
    """moto_server (S3, in memory) on a free port of 127.0.0.1, killed by PID in stop()."""

    def __init__(self, workdir):
        venv = os.environ.get("EDDY_VENV", "/var/tmp/eddy-venv")
        self.port = free_port()
        self.log = open(os.path.join(workdir, "moto.log"), "w")
        self.proc = subprocess.Popen([os.path.join(venv, "bin", "moto_server"), "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=self.log, stderr=self.log)
        url = f"http://127.0.0.1:{self.port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(url + "/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        req = urllib.request.Request(url + "/bench", method="PUT")
        urllib.request.urlopen(req, timeout=10)
        self.conf = {"s3.endpoint": url, "s3.region": "us-east-1", "s3.access-key": "bench",
                     "s3.secret-key": "bench", "s3.path.style.access": "true"}

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def prepare(table, eddy_src):
    out = os.path.join(OUT, table)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    eddy = os.path.join(out, "eddy")
    shutil.copy2(eddy_src, eddy)
    return out, eddy


# ---------------------------------------------------------------------------------------------
# throughput


GROUPBY_IN = re.compile(r"\| GroupBy[^|]*\] in (\S+) out")


def proc_cpu_s(pid):
    """user + sys CPU seconds of a live process (/proc/PID/stat)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cmd_throughput(a):
    out, eddy = prepare("throughput", a.eddy)
    print(f"- {machine(a.eddy)}")
    grp = ["-p", "2", "--taskmanagers", "1", "--slots", "2"]
    rocks = {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true"}
    big = a.big_keys
    # 10^7 keys: load every key once (not measured), cancelled after a checkpoint that holds them
    # all (retained), so that the measured runs work on a state of 10^7 keys from their start.
    load_dir = os.path.join(out, "ckpt-load")
    st = {"done_at": None}

    def on_load(job, line):
        m = GROUPBY_IN.search(line)
        if m and st["done_at"] is None and human(m.group(1)) >= big * 1.001:
            st["done_at"] = time.time()
            log(f"  load: {big:,} keys in state after {time.time() - job.t0:.0f} s")
        if CKPT_DONE.search(line) and st["done_at"] and time.time() - st["done_at"] > 11:
            job.cancel()

    lj = Job(eddy, "rows-groupby", ["--records", "0", "--keys", str(big)] + grp,
             dict(rocks, **{"execution.checkpointing.interval": "10s", "execution.checkpointing.dir": load_dir,
                            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}),
             out, "load-10M", on_line=on_load, timeout=a.load_timeout).run()
    jid = lj.summary.get("job_id")
    chks = sorted((d for d in os.listdir(os.path.join(load_dir, jid)) if d.startswith("chk-")),
                  key=lambda d: int(d[4:])) if jid and os.path.isdir(os.path.join(load_dir, jid)) else []
    if not chks or st["done_at"] is None:
        sys.exit(f"error: the 10^7-key load left no checkpoint with every key (status "
                 f"{lj.summary.get('status')}, log {lj.err_path})")
    restore_from = os.path.join(load_dir, jid, chks[-1])
    load_rate = big / (st["done_at"] - lj.t0)
    log(f"  load: {lj.summary.get('status')} in {lj.wall:.0f} s, CPU {lj.cpu_s:.0f} s; measured runs resume from {restore_from}")
    rows = []
    for r in range(1, a.runs + 1):
        # 10 k keys: the whole job, 10^8 records, a checkpoint every second (each one writes the
        # write-back cache to RocksDB and snapshots it).
        ck = os.path.join(out, f"ckpt-10k-{r}")
        j = Job(eddy, "rows-groupby", ["--records", "100000000", "--keys", "10000"] + grp,
                dict(rocks, **{"execution.checkpointing.interval": "1s", "execution.checkpointing.dir": ck}),
                out, f"rocksdb-10k-{r}", timeout=a.timeout).run()
        shutil.rmtree(ck, ignore_errors=True)
        s = j.summary
        ok = s.get("status") == "FINISHED" and not j.timed_out
        rows.append(dict(variant="rocksdb-10k", round=r, keys=10_000, records=100_000_000,
                         status=s.get("status", "NONE"), wall_s=j.wall, cpu_s=j.cpu_s, rss=j.maxrss_mb,
                         rps=1e8 / (s["duration_ms"] / 1000) if ok else None,
                         per_cpu=1e8 / j.cpu_s if ok else None, load1=j.load_start,
                         checkpoints=s.get("completed_checkpoints")))
        log(f"  rocksdb-10k #{r}: {rows[-1]['status']} {s.get('duration_ms')} ms, CPU {j.cpu_s:.1f} s")
        # 10^7 keys: resume from the loaded state, let it run WARM s, then measure records and
        # CPU seconds of the process over WINDOW s (samples at each progress line, every ~2 s):
        # every record is an update of a key in RocksDB (a point read, a write at write-back).
        ck = os.path.join(out, f"ckpt-10M-{r}")
        samples = []

        def on_line(job, line, samples=samples):
            m = GROUPBY_IN.search(line)
            if m and "RUNNING" in line.split("|", 1)[0]:
                n = human(m.group(1))
                if n > 0:
                    samples.append((time.time(), n, proc_cpu_s(job.proc.pid)))
                    if samples[-1][0] - samples[0][0] >= a.warm_s + a.window_s:
                        job.cancel()

        j = Job(eddy, "rows-groupby", ["--records", "0", "--keys", str(big)] + grp,
                dict(rocks, **{"execution.checkpointing.interval": "10s", "execution.checkpointing.dir": ck,
                               "execution.state-recovery.path": restore_from}),
                out, f"rocksdb-10M-{r}", on_line=on_line, timeout=a.timeout).run()
        shutil.rmtree(ck, ignore_errors=True)
        w = [x for x in samples if x[2] is not None and x[0] - samples[0][0] >= a.warm_s] if samples else []
        rps = per_cpu = None
        if len(w) >= 2 and w[-1][2] > w[0][2]:
            rps = (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])
            per_cpu = (w[-1][1] - w[0][1]) / (w[-1][2] - w[0][2])
        rows.append(dict(variant="rocksdb-10M", round=r, keys=big, records=(w[-1][1] - w[0][1]) if len(w) >= 2 else 0,
                         status=j.summary.get("status", "NONE"), wall_s=j.wall, cpu_s=j.cpu_s, rss=j.maxrss_mb,
                         rps=rps, per_cpu=per_cpu, load1=j.load_start,
                         window_cpu_s=(w[-1][2] - w[0][2]) if len(w) >= 2 else None,
                         checkpoints=j.summary.get("completed_checkpoints")))
        log(f"  rocksdb-10M #{r}: {rows[-1]['status']}, window {rows[-1]['records']:.0f} records, "
            f"{(rps or 0) / 1e3:.1f} k rec/s, {(per_cpu or 0) / 1e3:.1f} k rec/s per CPU s")
    with open(os.path.join(out, "runs.jsonl"), "w") as f:
        for x in rows:
            f.write(json.dumps(x) + "\n")
    print(f"- 10^7-key state: loaded by `rows-groupby --records 0 --keys {big}` (unbounded) (first pass "
          f"{load_rate / 1e3:.1f} k rec/s wall), cancelled at {lj.wall:.0f} s after `{os.path.basename(restore_from)}` "
          f"(CPU {lj.cpu_s:.0f} s, peak RSS {lj.maxrss_mb:.0f} MB); each measured run resumes from it, "
          f"warms up {a.warm_s} s, then is measured over {a.window_s} s")
    print()
    print("| variant | keys | records measured | runs ok | M rec/s (median) | M rec/s per CPU s (median, min-max) "
          "| CPU s of the process (median) | peak RSS MB (max) | checkpoints | per CPU s / Flink 2.3's 0.31 M/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("rocksdb-10k", "rocksdb-10M"):
        rs = [x for x in rows if x["variant"] == name]
        ok = [x for x in rs if x["per_cpu"]]
        pcs = [x["per_cpu"] for x in ok]
        pc = median(pcs)
        what = "10^8 (whole job)" if name == "rocksdb-10k" else f"{median([x['records'] for x in ok]):,.0f} (window)"
        print(f"| {name} | {rs[0]['keys']:,} | {what} | {len(ok)}/{len(rs)} | "
              f"{median([x['rps'] for x in ok]) / 1e6:.3f} | {pc / 1e6:.3f} ({min(pcs, default=0) / 1e6:.3f}-"
              f"{max(pcs, default=0) / 1e6:.3f}) | {median([x['cpu_s'] for x in rs]):.1f} | "
              f"{max(x['rss'] for x in rs):.0f} | {', '.join(str(x['checkpoints']) for x in rs)} | {pc / FLINK_ROCKSDB_10K:.2f}x |")
    print(f"- 1-minute load average at the start of the runs: {', '.join(str(x['load1']) for x in rows)}")


# ---------------------------------------------------------------------------------------------
# checkpoints


class MetadataPoller:
    """Copies each new `chk-N/_metadata` under `root` into `dest` while a job runs."""

    def __init__(self, root, dest):
        self.root, self.dest = root, dest
        os.makedirs(dest, exist_ok=True)
        self.stop_flag = threading.Event()
        self.seen = set()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def scan(self):
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = os.path.basename(dirpath)
            if base.startswith("chk-") and "_metadata" in filenames and base not in self.seen:
                try:
                    shutil.copy(os.path.join(dirpath, "_metadata"), os.path.join(self.dest, base + ".json"))
                    self.seen.add(base)
                except OSError:
                    pass

    def loop(self):
        while not self.stop_flag.is_set():
            self.scan()
            time.sleep(0.1)

    def stop(self):
        self.stop_flag.set()
        self.t.join()
        self.scan()


def metadata_files(meta):
    """(files referenced: path -> bytes, bytes of inline state in `_metadata`)."""
    files, inline = {}, 0
    for t in meta.get("tasks", []):
        for op in t["state"]["operators"]:
            inline += len(op.get("inline") or [])
            for h in _handles(op):
                files[h["path"]] = h["len"]
    return files, inline


def _handles(v):
    if isinstance(v, dict):
        if "path" in v and "len" in v and "crc32" in v:
            yield v
        else:
            for x in v.values():
                yield from _handles(x)
    elif isinstance(v, list):
        for x in v:
            yield from _handles(x)


def load_sequence(eddy, out, K, interval_s, timeout):
    """Puts K keys into RocksDB state: `sequence --keys K` unthrottled at -p 2 (full checkpoints
    into out/ckpt-load), cancelled after the first checkpoint triggered (completion time minus its
    duration) after the source emitted every key once, retained on cancellation. Returns (job, path of the retained checkpoint).

    Full, not incremental: main's incremental checkpoints of a job resumed from a retained
    *incremental* checkpoint reference the restored SST files under the new job's `shared/`,
    where they were never uploaded, so the first restore of such a checkpoint fails the job
    ("checkpoints N of this job completed but none can be read ... missing state file").
    A full (canonical) checkpoint restores into a fresh RocksDB instance whose files are all new."""
    load_dir = os.path.join(out, "ckpt-load")
    st = {"loaded_at": None, "after": 0}

    def on_load(job, line):
        m = SOURCE_OUT.search(line)
        if m and st["loaded_at"] is None and human(m.group(1)) >= K * 1.001:
            st["loaded_at"] = time.time()
            log(f"  load: {K:,} keys emitted after {time.time() - job.t0:.0f} s")
        c = CKPT_DONE.search(line)
        # Its trigger time (now - its duration, minus up to ~2 s until the line is printed) is
        # after every key was emitted: it holds them all.
        if c and st["loaded_at"] and time.time() - int(c.group(3)) / 1000 - 2.5 > st["loaded_at"]:
            st["after"] += 1
            job.cancel()

    j = Job(eddy, "sequence", ["--keys", str(K), "--per-key", "1000000", "--output", os.path.join(out, "seq-load"),
                               "-p", "2", "--taskmanagers", "1", "--slots", "2"],
            {"state.backend.type": "rocksdb", "execution.checkpointing.dir": load_dir,
             "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
             "restart-strategy.type": "none", "execution.checkpointing.incremental": "false",
             # A full RocksDB snapshot is synchronous: at 10^7 keys it takes seconds of the task.
             "execution.checkpointing.interval": f"{max(interval_s, 20)}s"},
            out, f"load-{K}", on_line=on_load, timeout=max(timeout, 900)).run()
    shutil.rmtree(os.path.join(out, "seq-load"), ignore_errors=True)
    jid = j.summary.get("job_id")
    d = os.path.join(load_dir, jid) if jid else None
    chks = sorted((c for c in os.listdir(d) if c.startswith("chk-")), key=lambda c: int(c[4:])) \
        if d and os.path.isdir(d) else []
    if not chks or st["after"] < 1:
        sys.exit(f"error: the load of {K} keys left no retained checkpoint with every key (status "
                 f"{j.summary.get('status')}, log {j.err_path})")
    restore_from = os.path.join(d, chks[-1])
    log(f"  load: {j.summary.get('status')} in {j.wall:.0f} s, CPU {j.cpu_s:.0f} s; resuming from {restore_from}")
    return j, restore_from


def cmd_checkpoints(a):
    out, eddy = prepare("checkpoints", a.eddy)
    K = a.keys
    print(f"- {machine(a.eddy)}")
    base_conf = {"state.backend.type": "rocksdb", "execution.checkpointing.externalized-checkpoint-retention":
                 "RETAIN_ON_CANCELLATION", "restart-strategy.type": "none"}
    if a.load_from:
        j, restore_from = None, a.load_from
    else:
        j, restore_from = load_sequence(eddy, out, K, a.interval_s, a.timeout)
    rate = K / 100 / a.interval_s
    results = {}
    for mode in ("full", "incremental"):
        ck = os.path.join(out, f"ckpt-{mode}")
        done = {"n": 0}

        def on_line(job, line, done=done):
            if CKPT_DONE.search(line):
                done["n"] += 1
                if done["n"] >= a.checkpoints:
                    job.cancel()

        poller = MetadataPoller(ck, os.path.join(out, f"meta-{mode}"))
        jj = Job(eddy, "sequence", ["--keys", str(K), "--per-key", "1000000", "--rate", f"{rate:.0f}",
                                    "--output", os.path.join(out, f"seq-{mode}"), "-p", "2",
                                    "--taskmanagers", "1", "--slots", "2"],
                 dict(base_conf, **{"execution.checkpointing.dir": ck,
                                    "execution.state-recovery.path": restore_from,
                                    "heartbeat.timeout": SLOW_RESTORE_HEARTBEAT,
                                    "execution.checkpointing.num-retained": "3",
                                    "execution.checkpointing.incremental": str(mode == "incremental").lower(),
                                    "execution.checkpointing.interval": f"{a.interval_s}s"}),
                 out, mode, on_line=on_line, timeout=a.timeout).run()
        poller.stop()
        hist = {c["id"]: c for c in (jj.summary.get("checkpoints") or {}).get("history", [])
                if c.get("status") == "COMPLETED"}
        metas = {}
        for f in os.listdir(poller.dest):
            metas[int(f[4:-5])] = json.load(open(os.path.join(poller.dest, f)))
        seen = set()
        rows = []
        for cid in sorted(metas):
            m = metas[cid].get("metadata", metas[cid])
            files, inline = metadata_files(m)
            new = {p: n for p, n in files.items() if p.rsplit("/", 1)[-1] not in seen}
            seen.update(p.rsplit("/", 1)[-1] for p in files)
            h = hist.get(cid, {})
            rows.append(dict(id=cid, state=sum(files.values()) + inline, uploaded=sum(new.values()) + inline,
                             files=len(files), new_files=len(new),
                             shared=sum(1 for p in files if "shared/" in p),
                             duration_ms=m["completion_timestamp_ms"] - m["trigger_timestamp_ms"],
                             rest_state_size=h.get("state_size")))
        results[mode] = (jj, rows)
        with open(os.path.join(out, f"{mode}.json"), "w") as f:
            json.dump(rows, f)
        log(f"  {mode}: {jj.summary.get('status')} ({len(rows)} checkpoints), CPU {jj.cpu_s:.0f} s")
        shutil.rmtree(ck, ignore_errors=True)
    if j:
        print(f"- load phase: `sequence --keys {K} --per-key 1000000`, unthrottled, full checkpoints, cancelled "
              f"at {j.wall:.0f} s after checkpoint `{os.path.basename(restore_from)}` (CPU {j.cpu_s:.0f} s)")
    else:
        print(f"- loaded state: {restore_from} (--load-from)")
    print(f"- then {rate:.0f} records/s = 1 % of the keys per {a.interval_s} s interval")
    print()
    print("| mode | checkpoint | state size MB (REST `state_size`) | uploaded MB (files new in this checkpoint) "
          "| uploaded / state | files (new) | duration ms (trigger -> complete) |")
    print("|---|---|---|---|---|---|---|")
    for mode, (jj, rows) in results.items():
        for r in rows:
            rest = r["rest_state_size"]
            print(f"| {mode} | {r['id']} | {r['state'] / 1e6:.1f}"
                  f"{'' if rest in (None, r['state']) else f' ({rest / 1e6:.1f})'} | {r['uploaded'] / 1e6:.2f} | "
                  f"{100 * r['uploaded'] / max(r['state'], 1):.1f} % | {r['files']} ({r['new_files']}) | {r['duration_ms']} |")
    print()
    for mode, (jj, rows) in results.items():
        later = rows[1:]  # the first checkpoint after the resume uploads the restored state
        if later:
            print(f"- {mode}, checkpoints after the first: median uploaded "
                  f"{median([r['uploaded'] for r in later]) / 1e6:.2f} MB of "
                  f"{median([r['state'] for r in later]) / 1e6:.1f} MB, median duration "
                  f"{median([r['duration_ms'] for r in later]):.0f} ms; job CPU {jj.cpu_s:.0f} s, "
                  f"wall {jj.wall:.0f} s, peak RSS {jj.maxrss_mb:.0f} MB, status {jj.summary.get('status')}")
    print(f"- 1-minute load average at the end: {load1()}")


# ---------------------------------------------------------------------------------------------
# restore

RESTORED = re.compile(r"restored .* from checkpoint (\d+): (\d+) bytes of state files from checkpoint storage, "
                      r"(\d+) bytes from local copies")
CONFIGS = ["full/dir", "full/dir+LR", "full/s3", "full/s3+LR",
           "incr/dir", "incr/dir+LR", "incr/s3", "incr/s3+LR"]


def cmd_restore(a):
    configs = CONFIGS if a.configs == "all" else a.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"error: unknown configuration '{c}'; allowed: {', '.join(CONFIGS)} or all")
    out, eddy = prepare("restore", a.eddy)
    print(f"- {machine(a.eddy)}")
    moto = Moto(out) if any("s3" in c for c in configs) else None
    rows = []
    try:
        for K in [int(k) for k in a.keys.split(",")]:
            if a.load_from:
                loaded = a.load_from
            else:
                _, loaded = load_sequence(eddy, out, K, a.interval_s, a.timeout)
            for c in configs:
                rows.append(restore_one(a, out, eddy, moto, K, c, loaded))
            shutil.rmtree(os.path.join(out, "ckpt-load"), ignore_errors=True)
    finally:
        if moto:
            moto.stop()
    print()
    print("| keys | snapshot / storage | state MB (last checkpoint) | restores | restore ms median (each) "
          "| phases ms: decision / restore-and-deploy / deploy-to-running (median) "
          "| MB from checkpoint storage per restore | MB from local copies per restore | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rec = r["recoveries"]
        tot = [x["durations"]["total"] for x in rec if x["durations"]["total"] is not None]
        ph = lambda k: median([x["durations"][k] for x in rec])
        n = max(len(rec), 1)
        print(f"| {r['keys']:,} | {r['config']} | {r['state_mb']:.1f} | {len(tot)} | {median(tot):.0f} "
              f"({', '.join(str(x) for x in tot)}) | {ph('decision'):.0f} / {ph('restore-and-deploy'):.0f} / "
              f"{ph('deploy-to-running'):.0f} | {r['storage_bytes'] / n / 1e6:.1f} | "
              f"{r['local_bytes'] / n / 1e6:.1f} | {r['status']}{' (timeout)' if r['timed_out'] else ''} |")
    print(f"- 1-minute load average at the end: {load1()}")


def restore_one(a, out, eddy, moto, K, config, loaded):
    kind, storage = config.split("/")
    lr = storage.endswith("+LR")
    tag = f"{K}-{kind}-{storage.replace('+', '-')}"
    if storage.startswith("s3"):
        ckdir = f"s3://bench/{tag}"
    else:
        ckdir = os.path.join(out, "ckpt-" + tag)
    trig = os.path.join(out, tag + ".fail")
    conf = {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": str(kind == "incr").lower(),
            "execution.checkpointing.interval": f"{a.interval_s}s", "execution.checkpointing.dir": ckdir,
            "execution.state-recovery.from-local": str(lr).lower(),
            "taskmanager.state.local.root-dirs": os.path.join(out, "local-" + tag),
            "restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "10",
            "restart-strategy.fixed-delay.delay": "0ms", "eddy.test-hooks.enabled": "true",
            "execution.state-recovery.path": loaded, "heartbeat.timeout": SLOW_RESTORE_HEARTBEAT}
    if storage.startswith("s3"):
        conf.update(moto.conf)
    # The job starts from the loaded checkpoint (every key in state). Once a checkpoint of its
    # own completed (it holds every key, in this configuration's kind and storage), the counting
    # operator fails; after the restart and the next completed checkpoint, again; F times, then
    # the job is cancelled.
    st = {"fails": 0, "restores": [], "last_size": 0}

    def on_line(job, line):
        c = CKPT_DONE.search(line)
        if c:
            st["last_size"] = int(c.group(2))
            if not os.path.exists(trig):
                if st["fails"] < a.failures:
                    st["fails"] += 1
                    open(trig, "w").close()
                    log(f"  {tag}: failure {st['fails']} at {time.time() - job.t0:.0f} s "
                        f"(last checkpoint {int(c.group(2)) / 1e6:.1f} MB)")
                else:
                    job.cancel()
        r = RESTORED.search(line)
        if r and st["fails"] > 0:  # not the start from the loaded checkpoint
            st["restores"].append((int(r.group(2)), int(r.group(3))))

    j = Job(eddy, "sequence", ["--keys", str(K), "--per-key", "1000000", "--output", os.path.join(out, "seq-" + tag),
                               "--fail-on-file", trig, "-p", "2", "--taskmanagers", "1", "--slots", "2"],
            conf, out, tag, on_line=on_line, timeout=a.timeout, env={"EDDY_LOG": "info"}).run()
    shutil.rmtree(os.path.join(out, "seq-" + tag), ignore_errors=True)
    if not storage.startswith("s3"):
        shutil.rmtree(ckdir, ignore_errors=True)
    shutil.rmtree(os.path.join(out, "local-" + tag), ignore_errors=True)
    row = dict(keys=K, config=config, status=j.summary.get("status", "NONE"), timed_out=j.timed_out,
               recoveries=j.summary.get("recoveries", []), storage_bytes=sum(s for s, _ in st["restores"]),
               local_bytes=sum(l for _, l in st["restores"]), state_mb=st["last_size"] / 1e6,
               cpu_s=round(j.cpu_s, 2), wall_s=round(j.wall, 1), load1=j.load_start)
    with open(os.path.join(out, "runs.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    tot = [x["durations"]["total"] for x in row["recoveries"]]
    log(f"  {tag}: {row['status']} in {j.wall:.0f} s, recoveries {tot} ms, "
        f"{row['storage_bytes'] / 1e6:.1f} MB from storage, {row['local_bytes'] / 1e6:.1f} MB local")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("eddy")
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--big-keys", type=int, default=10_000_000)
    t.add_argument("--warm-s", type=int, default=15, help="10^7 keys: seconds after the restore before measuring")
    t.add_argument("--window-s", type=int, default=45, help="10^7 keys: seconds measured")
    t.add_argument("--timeout", type=int, default=300, help="seconds per run")
    t.add_argument("--load-timeout", type=int, default=600, help="seconds for the 10^7-key load")
    c = sub.add_parser("checkpoints")
    c.add_argument("eddy")
    c.add_argument("--keys", type=int, default=10_000_000)
    c.add_argument("--interval-s", type=int, default=10)
    c.add_argument("--checkpoints", type=int, default=6, help="checkpoints per mode after the resume")
    c.add_argument("--timeout", type=int, default=400, help="seconds per job")
    c.add_argument("--load-from", help="a retained checkpoint of `sequence --keys K` (full) instead of the load phase")
    r = sub.add_parser("restore")
    r.add_argument("eddy")
    r.add_argument("--keys", default="100000,1000000", help="comma-separated state sizes (keys)")
    r.add_argument("--configs", default="all", help=f"comma-separated, of {', '.join(CONFIGS)}; or all")
    r.add_argument("--failures", type=int, default=2, help="task failures per job")
    r.add_argument("--interval-s", type=int, default=2)
    r.add_argument("--timeout", type=int, default=300, help="seconds per job")
    r.add_argument("--load-from", help="a retained checkpoint of `sequence --keys K` (full) instead of the load phase "
                   "(one state size only)")
    a = p.parse_args()
    if not os.access(a.eddy, os.X_OK):
        sys.exit(f"error: {a.eddy} is not an executable eddy binary (build: cargo build --release -p eddy)")
    a.eddy = os.path.realpath(a.eddy)
    if getattr(a, "load_from", None):
        a.load_from = os.path.realpath(a.load_from)
        if a.cmd == "restore" and "," in a.keys:
            sys.exit("error: --load-from needs one state size (--keys K), got " + a.keys)
    {"throughput": cmd_throughput, "checkpoints": cmd_checkpoints, "restore": cmd_restore}[a.cmd](a)


if __name__ == "__main__":
    main()
