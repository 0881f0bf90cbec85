"""Processes and sockets on this host, read from /proc: who is alive, what a command line says,
which TCP connections join two processes, and how to cut them (`ss -K`).

Only the standard library. Nothing here kills a process it was not given by pid.
"""

import os
import signal
import subprocess


def alive(pid):
    """Whether `pid` runs (a stopped process runs; a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    rest = stat.rsplit(")", 1)[-1].split()
    return bool(rest) and rest[0] != "Z"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def mentioning(needle):
    """Every live process (not this one) whose command line contains `needle`."""
    own = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid != own and needle in cmdline(pid) and alive(pid):
            out.append(pid)
    return sorted(out)


def send(pid, sig):
    """Sends `sig` to `pid`; False if it is gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill9(pid):
    return send(pid, signal.SIGKILL)


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def _tcp_table():
    """(local_port, remote_port, inode) of every established TCP socket (IPv4 and IPv6)."""
    rows = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if len(p) < 10 or p[3] != "01":  # 01 = ESTABLISHED
                        continue
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    rows.append((lport, rport, p[9]))
        except OSError:
            continue
    return rows


def connections_between(a, b):
    """The (port_of_a, port_of_b) pairs of the TCP connections between processes a and b."""
    ia, ib = _socket_inodes(a), _socket_inodes(b)
    table = _tcp_table()
    a_socks = {(l, r) for (l, r, i) in table if i in ia}
    b_socks = {(l, r) for (l, r, i) in table if i in ib}
    return sorted((l, r) for (l, r) in a_socks if (r, l) in b_socks)


def cut(a, b):
    """Destroys every TCP connection between processes a and b (both ends, `ss -K`); returns how
    many connections it cut. The processes see their connection aborted, as behind a firewall
    that rejects."""
    pairs = connections_between(a, b)
    for pa, pb in pairs:
        for s, d in ((pa, pb), (pb, pa)):
            subprocess.run(
                ["ss", "-K", "-t", "state", "established", f"( sport = :{s} and dport = :{d} )"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=10)
    return len(pairs)
