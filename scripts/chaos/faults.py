"""The fault model: every kind of fault the campaign injects, drawn from a seeded schedule
(`random.Random(seed)`: kinds, durations and which target of a kind), applied to a running
Cluster and healed after its duration. Each applied fault is a dict logged with its start time,
kind, target and heal time.

Durations are tied to the configuration's detection bounds, so that a stall is always long
enough to be detected: a paused leader stays paused past the ZooKeeper session, a paused or
partitioned TaskManager past heartbeat.timeout.
"""

import os
import signal
import subprocess
import threading
import time

import procs
from cluster import HEARTBEAT_TIMEOUT_S, SESSION_S

KINDS = [
    "tm_kill",               # kill -9 of a TaskManager
    "leader_kill",           # kill -9 of the leader JobManager
    "standby_kill",          # kill -9 of a standby JobManager
    "leader_stop",           # SIGSTOP of the leader past the ZooKeeper session, then SIGCONT
    "tm_stop",               # SIGSTOP of a TaskManager past heartbeat.timeout, then SIGCONT
    "zk_restart",            # ZooKeeper stopped and started again at once
    "zk_down",               # ZooKeeper down for longer than the session
    "partition_tm_jm",       # every connection TaskManager <-> leader cut, for longer than heartbeat.timeout
    "partition_leader_zk",   # every connection leader <-> ZooKeeper cut, for longer than the session
    "ckpt_readonly",         # the checkpoint directory read-only for a while
    "ckpt_full",             # the checkpoint directory's file system full for a while
    "multi",                 # 2 or 3 of the above at once
]
WEIGHTS = {"multi": 2, "tm_kill": 2, "leader_kill": 2}
# Kinds a `multi` fault combines (several at once on different targets).
MULTI_PARTS = ["tm_kill", "leader_kill", "standby_kill", "tm_stop", "leader_stop", "zk_restart",
               "partition_tm_jm", "ckpt_readonly"]
# At most one of these in a `multi` fault: they all act on the leader.
LEADER_FAULTS = {"leader_kill", "leader_stop", "partition_leader_zk"}
# After a TaskManager kill in standalone mode, the tool (as an orchestrator would) starts a new one.
TM_REPLACEMENT_DELAY_S = 1.0


def draw(rng, kinds):
    """One scheduled fault: (kind, params) from the seeded generator."""
    pool = [k for k in kinds for _ in range(WEIGHTS.get(k, 1))]
    kind = rng.choice(pool)
    if kind == "multi":
        parts = [k for k in MULTI_PARTS if k in kinds]
        n = rng.choice([2, 2, 3])
        chosen = []
        for k in rng.sample(parts, len(parts)):
            if len(chosen) < n and not any({k, c} <= LEADER_FAULTS for c in chosen):
                chosen.append(k)
        return kind, {"parts": [(k, _params(rng, k)) for k in chosen]}
    return kind, _params(rng, kind)


def _params(rng, kind):
    p = {"pick": rng.random()}
    if kind == "leader_stop" or kind == "zk_down" or kind == "partition_leader_zk":
        p["duration"] = round(rng.uniform(SESSION_S + 1.0, SESSION_S + 2.0), 2)
    elif kind in ("tm_stop", "partition_tm_jm"):
        p["duration"] = round(rng.uniform(HEARTBEAT_TIMEOUT_S + 1.0, HEARTBEAT_TIMEOUT_S + 2.0), 2)
    elif kind in ("ckpt_readonly", "ckpt_full"):
        p["duration"] = round(rng.uniform(1.5, 4.0), 2)
    return p


def _pick(items, p):
    return items[min(int(p["pick"] * len(items)), len(items) - 1)] if items else None


class Injector:
    """Applies faults to one Cluster; `apply` returns once every part of the fault healed."""

    def __init__(self, cluster, log):
        self.c = cluster
        self.log = log
        self.pending = []  # threads restarting TaskManagers / healing

    def apply(self, kind, params):
        start = time.time()
        rec = {"kind": kind, "start": start, "parts": []}
        if kind == "multi":
            threads = []
            for k, p in params["parts"]:
                part = {"kind": k}
                rec["parts"].append(part)
                t = threading.Thread(target=self._one, args=(k, p, part), daemon=True)
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
        else:
            part = {"kind": kind}
            rec["parts"].append(part)
            self._one(kind, params, part)
        rec["healed"] = max([p.get("healed", start) for p in rec["parts"]] + [start])
        rec["target"] = "; ".join(f"{p['kind']}: {p.get('target', '?')}" for p in rec["parts"])
        return rec

    # Each part fills `part` with target, start, healed (wall clock, s).
    def _one(self, kind, p, part):
        part["start"] = time.time()
        try:
            getattr(self, "_" + kind)(p, part)
        except Exception as e:  # a fault that could not be applied is logged, never fatal
            part["target"] = f"{part.get('target', '?')} (not applied: {e})"
        part.setdefault("healed", time.time())

    def _leader_pid(self):
        """The leader (waiting up to 15 s for one, e.g. right after a failover)."""
        i = self.c.wait_leader(15)
        return (i, self.c.jobmanager_pid(i)) if i is not None else (None, None)

    def _tm_kill(self, p, part):
        pid = _pick(self.c.taskmanagers(), p)
        part["target"] = f"TaskManager pid {pid}"
        if pid:
            procs.kill9(pid)
        part["healed"] = time.time()
        if self.c.mode == "standalone":
            part["target"] += f" (a replacement starts {TM_REPLACEMENT_DELAY_S} s later)"
            t = threading.Thread(target=self._replace_tm, daemon=True)
            t.start()
            self.pending.append(t)

    def _replace_tm(self):
        time.sleep(TM_REPLACEMENT_DELAY_S)
        pid = self.c.start_taskmanager()
        if pid:
            self.log(f"replacement TaskManager started: pid {pid}")

    def _leader_kill(self, p, part):
        i, pid = self._leader_pid()
        part["target"] = f"leader JobManager {i} pid {pid}"
        if pid:
            procs.kill9(pid)

    def _standby_kill(self, p, part):
        leader = self.c.leader()
        standbys = [i for i in range(len(self.c.masters)) if i != leader and self.c.jobmanager_pid(i)]
        i = _pick(standbys, p)
        pid = self.c.jobmanager_pid(i) if i is not None else None
        part["target"] = f"standby JobManager {i} pid {pid}"
        if pid:
            procs.kill9(pid)

    def _stop(self, pid, duration, part):
        if not pid:
            return
        procs.send(pid, signal.SIGSTOP)
        part.setdefault("stopped", []).append(pid)
        time.sleep(duration)
        procs.send(pid, signal.SIGCONT)
        part["healed"] = time.time()

    def _leader_stop(self, p, part):
        i, pid = self._leader_pid()
        part["target"] = f"leader JobManager {i} pid {pid} for {p['duration']} s"
        self._stop(pid, p["duration"], part)

    def _tm_stop(self, p, part):
        pid = _pick(self.c.taskmanagers(), p)
        part["target"] = f"TaskManager pid {pid} for {p['duration']} s"
        self._stop(pid, p["duration"], part)

    def _zk_restart(self, p, part):
        part["target"] = f"ZooKeeper 127.0.0.1:{self.c.zk_port}"
        self.c.zk("stop")
        self.c.zk("start")
        part["healed"] = time.time()

    def _zk_down(self, p, part):
        part["target"] = f"ZooKeeper 127.0.0.1:{self.c.zk_port} for {p['duration']} s"
        self.c.zk("stop")
        time.sleep(max(0.0, part["start"] + p["duration"] - time.time()))
        self.c.zk("start")
        part["healed"] = time.time()

    def _partition(self, a, b, duration, part):
        """Cuts every connection between a and b, again and again, for `duration`."""
        end = time.time() + duration
        cuts = 0
        while time.time() < end:
            cuts += procs.cut(a, b)
            time.sleep(0.05)
        part["healed"] = time.time()
        part["target"] += f" ({cuts} connections cut)"

    def _partition_tm_jm(self, p, part):
        tm = _pick(self.c.taskmanagers(), p)
        i, jm = self._leader_pid()
        part["target"] = f"TaskManager pid {tm} <-> leader JobManager {i} pid {jm} for {p['duration']} s"
        if tm and jm:
            self._partition(tm, jm, p["duration"], part)

    def _partition_leader_zk(self, p, part):
        i, jm = self._leader_pid()
        zk = self.c.zk_pid()
        part["target"] = f"leader JobManager {i} pid {jm} <-> ZooKeeper pid {zk} for {p['duration']} s"
        if jm and zk:
            self._partition(jm, zk, p["duration"], part)

    def _ckpt_readonly(self, p, part):
        d = self.c.ckpt
        part["target"] = f"{d} read-only for {p['duration']} s"
        # A read-only bind mount of the directory on itself (root ignores chmod).
        subprocess.run(["mount", "--bind", d, d], check=True, capture_output=True)
        self.c.ro_mounted = True
        r = subprocess.run(["mount", "-o", "remount,bind,ro", d], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True)
            self.c.ro_mounted = False
            raise RuntimeError(r.stderr.strip())
        time.sleep(p["duration"])
        subprocess.run(["umount", "-l", d], check=False, capture_output=True)
        self.c.ro_mounted = False
        part["healed"] = time.time()

    def _ckpt_full(self, p, part):
        d = self.c.ckpt
        path = os.path.join(d, ".chaos-fill")
        part["target"] = f"{d} (tmpfs) full for {p['duration']} s"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 1 << 12):  # fill up to the last page
                chunk = b"\0" * size
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        time.sleep(p["duration"])
        os.unlink(path)
        part["healed"] = time.time()
