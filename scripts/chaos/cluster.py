"""One run's system under test: a private ZooKeeper (scripts/zookeeper.sh), a generated conf dir
and the HA cluster `eddy cluster start` makes of it (3 JobManagers under supervisors, TaskManagers
in standalone or active resource-manager mode), the checkpoint directory on a small tmpfs, REST
access, and a stop that leaves no process behind (and says which ones it had to kill).

Everything binds 127.0.0.1 on ports the kernel picked free; every path is under the run's dir.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import procs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZK_SCRIPT = os.path.join(ROOT, "scripts", "zookeeper.sh")

SESSION_S = 2.0
HEARTBEAT_TIMEOUT_S = 3.0
# The slowest detection bound of the configuration: a silent peer is declared dead after this.
DETECTION_BOUND_S = max(SESSION_S, HEARTBEAT_TIMEOUT_S)
CKPT_TMPFS_MB = 64


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http(address, method, path, timeout=1.0):
    """(status, json-or-None); (None, error text) when nothing answered."""
    req = urllib.request.Request(f"http://{address}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(), e.code
    except (OSError, ValueError) as e:
        return None, str(e)
    try:
        return code, json.loads(body or b"null")
    except ValueError:
        return code, None


class Cluster:
    def __init__(self, run_dir, mode, eddy_bin, log):
        self.dir = run_dir
        self.mode = mode
        self.eddy = eddy_bin
        self.log = log  # log(text): the run's event log
        self.conf = os.path.join(run_dir, "conf")
        self.logdir = os.path.join(run_dir, "log")
        self.zkdir = os.path.join(run_dir, "zk")
        self.ckpt = os.path.join(run_dir, "ckpt")
        self.tmpfs = False
        self.ro_mounted = False
        zk_port, *rest = free_ports(4)
        self.zk_port = zk_port
        self.masters = [f"127.0.0.1:{p}" for p in rest]
        self.own_tms = []  # TaskManagers this tool started (standalone replacements)
        self.stopping = False
        self.lock = threading.Lock()  # orders TaskManager replacements before stop
        self.tm_counter = 0
        self.slots = 2 if mode == "standalone" else 3
        self.workers = 3 if mode == "standalone" else 2

    # ---- set-up -------------------------------------------------------------------------

    def write_conf(self):
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(self.ckpt, exist_ok=True)
        cluster_id = os.path.basename(self.dir)
        keys = {
            "high-availability.type": "zookeeper",
            "high-availability.zookeeper.quorum": f"127.0.0.1:{self.zk_port}",
            "high-availability.storageDir": os.path.join(self.dir, "ha"),
            "high-availability.zookeeper.path.root": "/eddy",
            "high-availability.cluster-id": f"/{cluster_id}",
            "high-availability.zookeeper.client.session-timeout": f"{int(SESSION_S)} s",
            "high-availability.zookeeper.client.connection-timeout": "10 s",
            "high-availability.jobmanager.port": "0",
            "cluster.jobmanager.restart-attempts": "1000",
            "jobmanager.rpc.address": "127.0.0.1",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": self.masters[0].split(":")[1],
            "taskmanager.host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": str(self.slots),
            "parallelism.default": "2",
            "execution.checkpointing.interval": "500 ms",
            "execution.checkpointing.dir": self.ckpt,
            "execution.checkpointing.tolerable-failed-checkpoints": "1000",
            "state.checkpoints.num-retained": "2",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "unlimited",
            "restart-strategy.fixed-delay.delay": "100 ms",
            "heartbeat.interval": "500 ms",
            "heartbeat.timeout": f"{int(HEARTBEAT_TIMEOUT_S)} s",
            "slot.request.timeout": "5 min",
            "env.log.dir": self.logdir,
        }
        if self.mode == "active":
            keys["resourcemanager.mode"] = "active"
            keys["resourcemanager.active.taskmanagers"] = str(self.workers)
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in keys.items())
        with open(os.path.join(self.conf, "masters"), "w") as f:
            f.writelines(m + "\n" for m in self.masters)
        with open(os.path.join(self.conf, "workers"), "w") as f:
            f.write("127.0.0.1\n" * self.workers)

    def mount_ckpt(self):
        """The checkpoint dir on its own small tmpfs, so it can be filled up. Needs root (mount);
        without it the dir stays a plain directory and the `ckpt_full` fault is not drawn."""
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={CKPT_TMPFS_MB}m", "tmpfs", self.ckpt],
                           capture_output=True, text=True, check=False)
        self.tmpfs = r.returncode == 0
        if not self.tmpfs:
            self.log(f"checkpoint dir is not a tmpfs ({r.stderr.strip()}); ckpt_full disabled")
        return self.tmpfs

    def can_mount(self):
        return os.geteuid() == 0

    def zk(self, action):
        args = [ZK_SCRIPT, action, "--dir", self.zkdir]
        if action == "start":
            args += ["--port", str(self.zk_port)]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"zookeeper.sh {action} failed: {r.stderr.strip() or r.stdout.strip()}")

    def zk_pid(self):
        try:
            with open(os.path.join(self.zkdir, "zookeeper.pid")) as f:
                pid = int(f.read().strip())
            return pid if procs.alive(pid) else None
        except (OSError, ValueError):
            return None

    def eddy_cmd(self, args, timeout):
        env = dict(os.environ, EDDY_LOG="info")
        env.pop("EDDY_CONF_DIR", None)
        return subprocess.run([self.eddy] + args, capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)

    def start(self):
        self.write_conf()
        if self.can_mount():
            self.mount_ckpt()
        self.zk("start")
        r = self.eddy_cmd(["cluster", "start", "--conf", self.conf], timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"eddy cluster start failed: {r.stderr.strip()}")
        self.log(r.stdout.strip())

    # ---- who is who ---------------------------------------------------------------------

    def pid_file(self, role, i):
        try:
            with open(os.path.join(self.logdir, f"eddy-{role}-{i}.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if procs.alive(pid) and self.conf in procs.cmdline(pid) else None

    def jobmanager_pid(self, i):
        return self.pid_file("jobmanager", i)

    def taskmanagers(self):
        """Live TaskManager pids of this cluster, sorted."""
        return [p for p in procs.mentioning(self.conf) if " taskmanager " in procs.cmdline(p) + " "]

    def roles(self):
        """[(index, HTTP status or None)] of GET /overview on every JobManager."""
        out = []
        for i, m in enumerate(self.masters):
            code, _ = http(m, "GET", "/overview", timeout=1.0)
            out.append((i, code))
        return out

    def leader(self):
        """The index of the JobManager that answers 200, or None."""
        for i, code in self.roles():
            if code == 200:
                return i
        return None

    def wait_leader(self, limit_s=60):
        deadline = time.time() + limit_s
        while time.time() < deadline:
            i = self.leader()
            if i is not None and self.jobmanager_pid(i):
                return i
            time.sleep(0.1)
        return None

    # ---- TaskManagers of standalone mode --------------------------------------------------

    def start_taskmanager(self):
        """Standalone mode: what an orchestrator does when a TaskManager died, start another."""
        with self.lock:
            if self.stopping:
                return None
            return self._start_taskmanager()

    def _start_taskmanager(self):
        self.tm_counter += 1
        path = os.path.join(self.logdir, f"chaos-taskmanager-{self.tm_counter}.log")
        env = dict(os.environ, EDDY_LOG="info")
        env.pop("EDDY_CONF_DIR", None)
        with open(path, "ab") as logf:
            p = subprocess.Popen([self.eddy, "taskmanager", "--conf", self.conf, "-D", "taskmanager.host=127.0.0.1"],
                                 stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env,
                                 start_new_session=True)
        self.own_tms.append(p)
        return p.pid

    # ---- jobs ---------------------------------------------------------------------------

    def submit(self, job_args, limit_s=60):
        """`eddy run JOB ... --conf DIR -d` (the client finds the leader through ZooKeeper),
        retried until it prints a job id."""
        deadline = time.time() + limit_s
        last = ""
        while time.time() < deadline:
            r = self.eddy_cmd(["run"] + job_args + ["--conf", self.conf, "-d"], timeout=60)
            jid = r.stdout.strip()
            if r.returncode == 0 and len(jid) == 32:
                return jid
            last = r.stderr.strip()
            time.sleep(0.5)
        raise RuntimeError(f"eddy run {' '.join(job_args)}: {last}")

    # ---- tear-down ----------------------------------------------------------------------

    def stop(self):
        """Stops everything; returns the descriptions of processes that outlived a clean stop
        (and were then killed with SIGKILL): a non-empty list is a finding."""
        left = []
        with self.lock:
            self.stopping = True
        for pid in procs.mentioning(self.conf):
            procs.send(pid, signal.SIGCONT)
        for p in self.own_tms:
            if p.poll() is None:
                p.terminate()
        try:
            r = self.eddy_cmd(["cluster", "stop", "--conf", self.conf], timeout=90)
            self.log(f"cluster stop: {(r.stdout + r.stderr).strip()}")
        except subprocess.TimeoutExpired:
            self.log("cluster stop did not end within 90 s")
        for p in self.own_tms:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and procs.mentioning(self.conf):
            time.sleep(0.2)
        for pid in procs.mentioning(self.conf):
            left.append(f"pid {pid}: {procs.cmdline(pid).strip()}")
            procs.kill9(pid)
        for p in self.own_tms:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.zk("stop")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            self.log(str(e))
        zk = procs.mentioning(self.zkdir)
        for pid in zk:
            procs.kill9(pid)
        self.unmount()
        return left

    def unmount(self):
        if self.ro_mounted:
            subprocess.run(["umount", "-l", self.ckpt], capture_output=True, check=False)
            self.ro_mounted = False
        if self.tmpfs:
            r = subprocess.run(["umount", "-l", self.ckpt], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                self.log(f"umount {self.ckpt}: {r.stderr.strip()}")
            self.tmpfs = False
