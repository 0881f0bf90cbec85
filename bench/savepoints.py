#!/usr/bin/env python3
"""Savepoint and restore durations vs state size (issue 11's benchmark); results: bench/RESULTS.md.

    bench/savepoints.py EDDY_BINARY [--keys 100000,1000000,10000000] [--reps 3]

For each key count K, on a fresh session cluster (1 JobManager, 2 TaskManagers x 2 slots, all on
127.0.0.1 with free ports, in a temp dir):

1. `sequence --keys K` runs at -p 2 until every key has keyed state (the counter: two periodic
   checkpoints in a row of the same size), with periodic checkpoints every 2 s
   (RETAIN_ON_CANCELLATION, so a retained checkpoint can be resumed from).
2. savepoint duration: `POST /jobs/:id/savepoints` -> operation COMPLETED (client clock), and the
   coordinator's own trigger-to-completion from /jobs/:id/checkpoints; beside it the duration of
   the last periodic checkpoint from the same history.
3. restore duration: `eddy run ... -s PATH -d` submitted -> every subtask RUNNING (a task reports
   RUNNING only once its state is restored), polled every 10 ms; for the savepoint at -p 2, the
   savepoint at -p 4 (rescale), and the retained checkpoint `chk-<n>` at -p 2. Each restored job
   is cancelled right after; `--reps` restores of each kind, interleaved.

Prints one CSV row per measurement and a summary (medians). Every process it starts is stopped by
`eddy cluster stop` and then SIGKILL by pid (pid files) when it ends, also on error.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http(rest, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{rest}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def all_running(job):
    vs = job.get("vertices") or []
    return job.get("state") == "RUNNING" and vs and all(
        v["tasks"].get("RUNNING") == v["parallelism"] for v in vs)


class Cluster:
    def __init__(self, eddy, workdir):
        self.eddy = eddy
        self.dir = workdir
        self.conf = os.path.join(workdir, "conf")
        self.log = os.path.join(workdir, "log")
        os.makedirs(self.conf)
        rest_port, rpc_port = free_ports(2)
        self.rest = f"127.0.0.1:{rest_port}"
        keys = {
            "jobmanager.rpc.address": "127.0.0.1", "jobmanager.rpc.port": rpc_port,
            "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": rest_port,
            "taskmanager.host": "127.0.0.1", "taskmanager.numberOfTaskSlots": 2,
            "execution.checkpointing.interval": "2 s",
            "execution.checkpointing.timeout": "10 min",
            "execution.checkpointing.dir": os.path.join(workdir, "checkpoints"),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "state.savepoints.dir": os.path.join(workdir, "savepoints"),
            "heartbeat.timeout": "60 s", "env.log.dir": self.log,
        }
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in keys.items())
        with open(os.path.join(self.conf, "masters"), "w") as f:
            f.write(f"127.0.0.1:{rest_port}\n")
        with open(os.path.join(self.conf, "workers"), "w") as f:
            f.write("127.0.0.1\n" * 2)
        self.cli("cluster", "start", "--conf", self.conf)

    def cli(self, *args):
        out = subprocess.run([self.eddy, *args], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "EDDY_LOG": "warn"})
        if out.returncode != 0:
            raise RuntimeError(f"eddy {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self):
        pids = []
        for name in os.listdir(self.log) if os.path.isdir(self.log) else []:
            if name.endswith(".pid"):
                try:
                    pids.append(int(open(os.path.join(self.log, name)).read().split()[0]))
                except (ValueError, IndexError, OSError):
                    pass
        subprocess.run([self.eddy, "cluster", "stop", "--conf", self.conf],
                       capture_output=True, timeout=60)
        for pid in pids:
            try:
                if "eddy" in open(f"/proc/{pid}/cmdline").read():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def job(self, job_id):
        return http(self.rest, "GET", f"/jobs/{job_id}")

    def wait(self, what, probe, limit=600, every=0.01):
        deadline = time.time() + limit
        while time.time() < deadline:
            v = probe()
            if v:
                return v
            time.sleep(every)
        raise RuntimeError(f"gave up waiting for {what}")

    def run(self, out, keys, p, extra=()):
        t0 = time.time()
        job_id = self.cli("run", "sequence", "--keys", str(keys), "--per-key", "1000000000",
                          "--rate", str(max(keys, 100_000)), "--output", out, "-p", str(p),
                          "-m", self.rest, "-d", *extra)
        self.wait(f"job {job_id} running", lambda: all_running(self.job(job_id)))
        return job_id, (time.time() - t0) * 1000

    def cancel(self, job_id):
        self.cli("cancel", job_id, "-m", self.rest)
        self.wait(f"job {job_id} to end",
                  lambda: self.job(job_id)["state"] in ("CANCELED", "FAILED", "FINISHED"),
                  every=0.05)


def history(c, job_id):
    return http(c.rest, "GET", f"/jobs/{job_id}/checkpoints").get("history", [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("eddy")
    ap.add_argument("--keys", default="100000,1000000")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="eddy-bench-savepoints.")
    eddy = os.path.join(work, "eddy")
    shutil.copy(a.eddy, eddy)  # other builds cannot change the binary under the run
    rows = []
    print("keys,measure,ms,detail", flush=True)
    try:
        for keys in [int(k) for k in a.keys.split(",")]:
            c = Cluster(eddy, os.path.join(work, f"k{keys}"))
            try:
                out = os.path.join(c.dir, "out")
                job_id, _ = c.run(out, keys, 2)
                # Every key has state once the source emitted one record per key.
                time.sleep(keys / max(keys, 100_000) + 1)
                done = lambda: [h for h in history(c, job_id) if h.get("status") == "COMPLETED"
                                and h.get("checkpoint_type") == "CHECKPOINT"]
                # ... and until two checkpoints in a row have the same size (the counter's state
                # is one fixed-size value per key: it stops growing once every key has one).
                c.wait("the state to stop growing", lambda: len(done()) >= 2 and
                       done()[-1]["state_size"] == done()[-2]["state_size"], every=0.2)
                ck = done()[-1]
                ck_ms = ck["end_to_end_duration"]
                rows.append((keys, "checkpoint", ck_ms, f"state_size={ck['state_size']}"))
                t0 = time.time()
                trig = http(c.rest, "POST", f"/jobs/{job_id}/savepoints", {})["request-id"]
                res = c.wait("the savepoint", lambda: (lambda s: s if s["status"]["id"] == "COMPLETED" else None)(
                    http(c.rest, "GET", f"/jobs/{job_id}/savepoints/{trig}")))
                sp_client_ms = (time.time() - t0) * 1000
                sp = res["operation"]["location"]
                sp_hist = [h for h in history(c, job_id) if h.get("checkpoint_type") == "SAVEPOINT"][-1]
                rows.append((keys, "savepoint (client)", sp_client_ms, sp))
                rows.append((keys, "savepoint (coordinator)", sp_hist["end_to_end_duration"],
                             f"state_size={sp_hist['state_size']}"))
                # One more checkpoint after the savepoint: the retained one restored below.
                n = len(done())
                c.wait("a checkpoint after the savepoint", lambda: len(done()) > n, every=0.2)
                c.cancel(job_id)
                chk_dir = os.path.join(c.dir, "checkpoints", job_id)
                chk = max((d for d in os.listdir(chk_dir) if d.startswith("chk-")),
                          key=lambda d: int(d[4:]))
                chk = os.path.join(chk_dir, chk)
                for rep in range(a.reps):
                    for label, path, p in (("restore savepoint p2->p2", sp, 2),
                                           ("restore savepoint p2->p4", sp, 4),
                                           ("restore retained checkpoint p2->p2", chk, 2)):
                        o = os.path.join(c.dir, f"out-{label.replace(' ', '_')}-{rep}")
                        jid, ms = c.run(o, keys, p, ("-s", path))
                        rows.append((keys, label, ms, f"rep {rep}"))
                        c.cancel(jid)
                for r in rows:
                    if r[0] == keys:
                        print(f"{r[0]},{r[1]},{r[2]:.0f},{r[3]}", flush=True)
            finally:
                c.stop()
    finally:
        print("\nsummary (median ms)")
        for keys in sorted({r[0] for r in rows}):
            for measure in dict.fromkeys(r[1] for r in rows if r[0] == keys):
                xs = [r[2] for r in rows if r[0] == keys and r[1] == measure]
                print(f"{keys:>9} {measure:<38} {statistics.median(xs):>9.0f}  (n={len(xs)})")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
