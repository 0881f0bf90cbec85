"""The oracles a run is judged by, all read from what the system left on disk:

- `sequence_witness`: every (key, seq) exactly once and count == seq (scripts/witness.py's rule);
- `compare_golden`: the committed output of the windowed job equals a fault-free run's, as a
  multiset of lines;
- `CommittedFiles`: a committed file (no leading '.') once seen is never deleted or changed;
- `split_brain`: from the JobManagers' logs, no write accepted under a leader session after
  another JobManager was granted leadership (accepted writes of two leaders never overlap).
"""

import collections
import datetime as dt
import hashlib
import os
import re

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s")


def committed(out_dir):
    try:
        return sorted(n for n in os.listdir(out_dir) if not n.startswith("."))
    except OSError:
        return []


def committed_lines(out_dir):
    lines = []
    for n in committed(out_dir):
        with open(os.path.join(out_dir, n), errors="replace") as f:
            lines.extend(l.rstrip("\n") for l in f if l.strip())
    return lines


def sequence_witness(out_dir, keys, per_key):
    """(lost, duplicated, detail): lost counts missing (key, seq) and lines with count < seq,
    duplicated counts extra copies and lines with count > seq (state counted twice)."""
    seen = collections.Counter()
    low = high = bad = 0
    for line in committed_lines(out_dir):
        try:
            k, s, c = (int(x) for x in line.split(","))
        except ValueError:
            bad += 1
            continue
        seen[(k, s)] += 1
        low += c < s
        high += c > s
    missing = sum(1 for k in range(keys) for s in range(1, per_key + 1) if seen[(k, s)] == 0)
    dups = sum(n - 1 for n in seen.values() if n > 1)
    detail = (f"{sum(seen.values())} lines, {missing} missing, {dups} duplicates, "
              f"{low + high} with count != seq, {bad} unparsable")
    return missing + low + bad, dups + high, detail


def compare_golden(out_dir, golden_lines):
    """(lost, duplicated, detail): lines of the fault-free run missing here, lines here that the
    fault-free run does not have (or has fewer times)."""
    got = collections.Counter(committed_lines(out_dir))
    want = collections.Counter(golden_lines)
    lost = sum((want - got).values())
    extra = sum((got - want).values())
    detail = f"{sum(got.values())} lines vs {sum(want.values())} golden: {lost} missing, {extra} extra"
    return lost, extra, detail


class CommittedFiles:
    """Snapshots names and checksums of the committed files of some output dirs; `poll` reports
    each committed file that disappeared or changed since it was first seen."""

    def __init__(self, dirs):
        self.dirs = dirs
        self.known = {}  # path -> (size, mtime_ns, sha256, lines)
        self.violations = []  # (path, what, lines)
        self.reported = set()

    def poll(self):
        for d in self.dirs:
            names = set(committed(d))
            for n in names:
                path = os.path.join(d, n)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                prev = self.known.get(path)
                if prev is None:
                    digest, lines = self._hash(path)
                    if digest is not None:
                        self.known[path] = (st.st_size, st.st_mtime_ns, digest, lines)
                elif (st.st_size, st.st_mtime_ns) != prev[:2]:
                    digest, _ = self._hash(path)
                    if digest != prev[2]:
                        self._violate(path, "changed after it was committed", prev[3])
            for path, prev in self.known.items():
                if os.path.dirname(path) == d and os.path.basename(path) not in names:
                    self._violate(path, "deleted after it was committed", prev[3])

    def _violate(self, path, what, lines):
        if path not in self.reported:
            self.reported.add(path)
            self.violations.append((path, what, lines))

    @staticmethod
    def _hash(path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None, 0
        return hashlib.sha256(data).hexdigest(), data.count(b"\n")

    def retracted(self):
        return sum(v[2] for v in self.violations)


def _ts(line):
    m = TS.match(line)
    if not m:
        return None
    return dt.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=dt.timezone.utc).timestamp()


GRANT = re.compile(r"JobManager \S+ granted leadership \(session ([0-9a-f]+)\)")
STEP_DOWN = re.compile(r"JobManager stepping down: (.*)")
INCARNATION = re.compile(r"JobManager running: .*\(pid (\d+)\)")
WRITE = re.compile(r"job ([0-9a-f]{32}): completed checkpoint (\d+)")
RESULT = re.compile(r"job \S+ \(([0-9a-f]{32})\) switched from \S+ to (FINISHED|FAILED|CANCELED)")
RECOVERED = re.compile(r"job ([0-9a-f]{32}): recovered with retained checkpoints \[([0-9, ]*)\]")


def leadership_events(log_paths, recovered=None):
    """Per JobManager log: grants, ends of leadership and accepted writes, with wall-clock
    times. Returns (tenures, writes): tenures = [(jm, session, start, end or None)], writes =
    [(time, jm, session or None, what)]. With a dict `recovered`, also fills it with
    (session, job) -> the checkpoint ids that leader found in the HA store when it recovered
    the job (so they were accepted before its grant)."""
    tenures, writes = [], []
    for jm, path in log_paths:
        try:
            with open(path, errors="replace") as f:
                text = ANSI.sub("", f.read())
        except OSError:
            continue
        current = None  # [session, start]
        for line in text.splitlines():
            t = _ts(line)
            if t is None:
                continue
            m = GRANT.search(line)
            if m:
                if current:
                    tenures.append((jm, current[0], current[1], t))
                current = [m.group(1), t]
                continue
            if STEP_DOWN.search(line) or INCARNATION.search(line):
                # A new incarnation: the previous process died at some time before this line.
                if current:
                    tenures.append((jm, current[0], current[1], t))
                current = None
                continue
            m = RECOVERED.search(line)
            if m and current and recovered is not None:
                ids = {int(x) for x in m.group(2).replace(" ", "").split(",") if x}
                recovered.setdefault((current[0], m.group(1)), set()).update(ids)
                continue
            m = WRITE.search(line) or RESULT.search(line)
            if m:
                what = (f"checkpoint {m.group(2)} of job {m.group(1)}" if m.re is WRITE
                        else f"result {m.group(2)} of job {m.group(1)}")
                writes.append((t, jm, current[0] if current else None, what, line.strip()))
        if current:
            tenures.append((jm, current[0], current[1], None))
    return tenures, writes


def split_brain(log_paths, pauses):
    """Writes accepted under one leader session after another JobManager had been granted
    leadership (or with no session at all). `pauses` = [(pid-less jm index or None, stop, cont)]
    of SIGSTOPs the tool applied to JobManagers: a write logged within 0.5 s after such a pause
    may have been accepted before it (the log line comes after the write), so it is listed as
    ambiguous rather than counted. A checkpoint that the later leader found in the HA store when
    it recovered the job was accepted before that leader's grant (its log line came late, e.g.
    delayed by a pause): not a violation. Returns (violations, ambiguous), each a list of texts."""
    recovered = {}
    tenures, writes = leadership_events(log_paths, recovered)
    violations, ambiguous = [], []
    for (t, jm, session, what, line) in writes:
        if session is None:
            violations.append(f"JobManager {jm} logged an accepted write while not leading: {line}")
            continue
        start = next((s for (j, ses, s, _e) in tenures if j == jm and ses == session), None)
        later = [(j, ses, s) for (j, ses, s, _e) in tenures
                 if ses != session and start is not None and start < s < t]
        if not later:
            continue
        j2, ses2, s2 = later[0]
        m = re.match(r"checkpoint (\d+) of job ([0-9a-f]{32})$", what)
        if m and int(m.group(1)) in recovered.get((ses2, m.group(2)), ()):
            continue
        text = (f"JobManager {jm} (session {session[:8]}) accepted {what} at {_fmt(t)}, after "
                f"JobManager {j2} was granted leadership (session {ses2[:8]}) at {_fmt(s2)}: {line}")
        # A line held up by the pause carries a time at the resume, which can come a moment
        # before the tool's own record of the SIGCONT: the window opens at the SIGSTOP.
        if any(pj == jm and stop <= t <= cont + 0.5 for (pj, stop, cont) in pauses):
            ambiguous.append(text)
        else:
            violations.append(text)
    return violations, ambiguous


def _fmt(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
