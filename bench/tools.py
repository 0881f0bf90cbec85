#!/usr/bin/env python3
"""Helpers of bench/run.sh: record one run as a CSV row, parse logs, print summaries.

    tools.py record CSV SUITE VARIANT ROUND RECORDS BYTES STDOUT TIMEFILE [CHECK [STDERR]]
    tools.py wait-idle MAX_BUSY TIMEOUT_S    wait (up to TIMEOUT_S) until the CPUs were busy less than
                                          MAX_BUSY (0..1) during one second: other people's work
    tools.py pty-run STDOUT STDERR -- COMMAND...   run with stderr on a pseudo-terminal (so
                                          `eddy local` shows its progress every 200 ms) and write
                                          each progress update to STDERR as `<seconds>\t<text>`
    tools.py summary CSV                  medians / min / max per variant, and the suite's ratios
    tools.py ckpt-durations LOG...        checkpoint durations (trigger -> complete) from `eddy local`
    tools.py recovery LOG...              failure -> all tasks RUNNING again, from EDDY_LOG=info logs

Only the standard library; it never writes anything but stdout, the CSV given to `record` and
the two files given to `pty-run`.

Throughput is records (or bytes) divided by the job's `duration_ms` from the `--json` summary of
`eddy local` (the JobManager's job duration: submission to the terminal state, so it includes
scheduling and deployment but not the start of the mini cluster), or by `elapsed_ms` that the
handwritten baseline reports (open file -> last count). `wall_s` is the whole process, from
/usr/bin/time.

`steady_records_per_s` (runs made with `pty-run`) is the source's steady-state rate: the
least-squares slope of the source vertex's `out` counter over time, between 10 % and 90 % of the
records. It leaves out the start and the end of the job, in particular the wait of a bounded job
with checkpointing for one last checkpoint after its sources ended (as in Flink, a finished source
waits for the next periodic checkpoint so the exactly-once sink can commit): up to one interval.
"""

import csv
import datetime as dt
import json
import os
import re
import statistics
import sys

FIELDS = ["suite", "variant", "round", "records", "bytes", "duration_ms", "wall_s", "cpu_s", "maxrss_kb",
          "status", "restarts", "completed_checkpoints", "failed_checkpoints", "load1", "check",
          "records_per_s", "mb_per_s", "steady_records_per_s", "others_cpu_share"]

FLINK = {"rows-discard": 6.4e6, "rows-groupby": 2.0e6}  # records/s, Flink 2.3 on this machine
ROWS_TARGET = 5.0
CKPT_LOSS_TARGET = 3.0  # % at 1 s
RECOVERY_TARGET_MS = 200.0

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_json_line(path):
    with open(path, errors="replace") as f:
        lines = [l.strip() for l in f if l.strip()]
    for l in reversed(lines):
        if l.startswith("{"):
            return json.loads(l)
    return None


def cmd_record(a):
    csv_path, suite, variant, rnd, records, nbytes, out_path, time_path = a[:8]
    check = a[8] if len(a) > 8 else ""
    steady = steady_rate(a[9], int(records)) if len(a) > 9 else None
    j = last_json_line(out_path) or {}
    maxrss, wall, cpu = "", "", ""
    try:
        with open(time_path) as f:
            parts = f.read().split()
        # /usr/bin/time -f '%M %e %U %S': the last four fields (it may prefix a "Command exited"
        # line).
        maxrss, wall = parts[-4], parts[-3]
        cpu = f"{float(parts[-2]) + float(parts[-1]):.2f}"
    except (OSError, IndexError, ValueError):
        pass
    duration = j.get("duration_ms", j.get("elapsed_ms", ""))
    status = j.get("status", "FINISHED" if "elapsed_ms" in j else "NO-SUMMARY")
    records, nbytes = int(records), int(nbytes)
    rps = mbps = ""
    if duration not in ("", None) and float(duration) > 0 and status == "FINISHED":
        secs = float(duration) / 1000.0
        rps = f"{records / secs:.0f}" if records else ""
        mbps = f"{nbytes / secs / 1e6:.2f}" if nbytes else ""
    with open("/proc/loadavg") as f:
        load1 = f.read().split()[0]
    # CPU used by everything else on the machine while this run lasted, as a share of all CPUs:
    # /proc/stat busy time before and after the run minus the run's own user + sys time.
    others = ""
    base = time_path[:-len(".time")] if time_path.endswith(".time") else time_path
    try:
        b0, _ = proc_stat(open(base + ".stat0").read())
        b1, _ = proc_stat(open(base + ".stat1").read())
        if wall and cpu:
            share = ((b1 - b0) - float(cpu)) / (float(wall) * os.cpu_count())
            others = f"{max(0.0, share):.2f}"
    except (OSError, ValueError):
        pass
    row = dict(suite=suite, variant=variant, round=rnd, records=records or "", bytes=nbytes or "",
               duration_ms=duration, wall_s=wall, cpu_s=cpu, maxrss_kb=maxrss, status=status,
               restarts=j.get("restarts", ""), completed_checkpoints=j.get("completed_checkpoints", ""),
               failed_checkpoints=j.get("failed_checkpoints", ""), load1=load1, check=check,
               records_per_s=rps, mb_per_s=mbps,
               steady_records_per_s=f"{steady:.0f}" if steady else "", others_cpu_share=others)
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    shown = f"{float(rps) / 1e6:.2f} M rec/s" if rps else ""
    if mbps:
        shown += f" {mbps} MB/s"
    if steady:
        shown += f" (steady {steady / 1e6:.2f} M rec/s)"
    print(f"  {suite}/{variant} #{rnd}: {status} duration {duration} ms, wall {wall} s, cpu {cpu} s, "
          f"others {others}, max RSS {int(maxrss) // 1024 if maxrss else '?'} MB, {shown} {check}".rstrip())


def cmd_pty_run(a):
    import pty
    import select
    import subprocess
    import time
    out_path, err_path = a[0], a[1]
    cmd = a[3:] if a[2] == "--" else a[2:]
    master, slave = pty.openpty()
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "w") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
        os.close(slave)
        pending = ""
        while True:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    data = b""
                if not data:
                    break
                now = time.monotonic() - t0
                pending += data.decode(errors="replace")
                parts = re.split(r"[\r\n]", pending)
                pending = parts.pop()
                for seg in parts:
                    if seg.strip():
                        err.write(f"{now:.4f}\t{seg.rstrip()}\n")
            elif p.poll() is not None:
                break
        if pending.strip():
            err.write(f"{time.monotonic() - t0:.4f}\t{pending.rstrip()}\n")
        os.close(master)
        rc = p.wait()
    sys.exit(rc)


def proc_stat(text):
    """(busy seconds, total seconds) from the `cpu` line of /proc/stat."""
    v = [int(x) for x in text.split("\n")[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]  # idle + iowait
    total = sum(v[:8])
    return (total - idle) / hz, total / hz


def cmd_wait_idle(a):
    import time
    max_busy, timeout = float(a[0]), float(a[1])
    start = time.monotonic()
    while True:
        b0, t0 = proc_stat(open("/proc/stat").read())
        time.sleep(1.0)
        b1, t1 = proc_stat(open("/proc/stat").read())
        busy = (b1 - b0) / max(t1 - t0, 1e-9)
        waited = time.monotonic() - start
        if busy < max_busy or waited >= timeout:
            print(f"    (CPUs {busy * 100:.0f} % busy before the run; waited {waited:.0f} s)")
            return


def human_count(s):
    mult = {"k": 1e3, "M": 1e6}.get(s[-1], 1.0)
    return float(s[:-1] if s[-1] in "kM" else s) * mult


SOURCE_OUT = re.compile(r"\[[A-Z]+x\d+\] in \S+ out (\S+)")
STAMPED = re.compile(r"^(\d+\.\d+)\t(.*)$")


def steady_rate(err_path, total):
    """Slope (records/s) of the first vertex's `out` counter between 10 % and 90 % of `total`."""
    pts = []
    try:
        with open(err_path, errors="replace") as f:
            for line in f:
                m = STAMPED.match(line.rstrip("\n"))
                if not m:
                    continue
                fields = ANSI.sub("", m.group(2)).split(" | ")
                if len(fields) < 2:
                    continue
                o = SOURCE_OUT.search(fields[1])
                if o:
                    n = human_count(o.group(1))
                    if 0.1 * total <= n <= 0.9 * total and (not pts or n != pts[-1][1]):
                        pts.append((float(m.group(1)), n))
    except OSError:
        return None
    if len(pts) < 5:
        return None
    mt = sum(t for t, _ in pts) / len(pts)
    mn = sum(n for _, n in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (n - mn) for t, n in pts) / den if den else None


def num(rows, key):
    return [float(r[key]) for r in rows if r.get(key) not in ("", None)]


def mmm(xs, fmt="{:.2f}"):
    if not xs:
        return "n/a", "n/a", "n/a"
    return fmt.format(statistics.median(xs)), fmt.format(min(xs)), fmt.format(max(xs))


def cmd_summary(a):
    with open(a[0]) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("no runs")
        return
    variants = list(dict.fromkeys((r["suite"], r["variant"]) for r in rows))
    bad = [r for r in rows if r["status"] != "FINISHED" or r["check"] not in ("", "ok")]
    print("| suite | variant | runs | M records/s median (min-max) | MB/s median (min-max) "
          "| duration ms median | wall s median | CPU s median | peak RSS MB median (max) "
          "| others' CPU share median (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    med = {}
    for s, v in variants:
        rs = [r for r in rows if r["suite"] == s and r["variant"] == v and r["status"] == "FINISHED"]
        rps = [x / 1e6 for x in num(rs, "records_per_s")]
        mbs = num(rs, "mb_per_s")
        med[(s, v)] = (statistics.median(rps) if rps else None, statistics.median(mbs) if mbs else None)
        r_m, r_lo, r_hi = mmm(rps)
        b_m, b_lo, b_hi = mmm(mbs, "{:.1f}")
        rss = [x / 1024 for x in num(rs, "maxrss_kb")]
        rss_s = f"{statistics.median(rss):.1f} ({max(rss):.1f})" if rss else "n/a"
        oth = num(rs, "others_cpu_share")
        oth_s = f"{statistics.median(oth):.2f} ({max(oth):.2f})" if oth else "n/a"
        print(f"| {s} | {v} | {len(rs)} | {r_m} ({r_lo}-{r_hi}) | "
              f"{b_m} ({b_lo}-{b_hi}) | {mmm(num(rs, 'duration_ms'), '{:.0f}')[0]} | "
              f"{mmm(num(rs, 'wall_s'))[0]} | {mmm(num(rs, 'cpu_s'))[0]} | {rss_s} | {oth_s} |")
    print()
    if any(r.get("steady_records_per_s") for r in rows):
        print("| suite | variant | steady-state M records/s median (min-max) |")
        print("|---|---|---|")
        for s, v in variants:
            rs = [r for r in rows if r["suite"] == s and r["variant"] == v and r["status"] == "FINISHED"]
            st = [x / 1e6 for x in num(rs, "steady_records_per_s")]
            m, lo, hi = mmm(st)
            med[(s, v, "steady")] = statistics.median(st) if st else None
            print(f"| {s} | {v} | {m} ({lo}-{hi}) |")
        print()
    suites = {s for s, _ in variants}
    if "wordcount" in suites:
        base = {v: med.get(("wordcount", v), (None, None))[1] for v in ("handwritten-std", "handwritten-fx")}
        for v in [v for s, v in variants if s == "wordcount" and v.startswith("eddy")]:
            m = med[("wordcount", v)][1]
            parts = [f"{v}/{b} = {m / bm:.2f}" for b, bm in base.items() if m and bm]
            print(f"- word-count ratio (median MB/s, same run): {'; '.join(parts)}"
                  + (" (target for p2: >= 1.00)" if "p2" in v else ""))
    if "rows" in suites:
        for v, flink in FLINK.items():
            m = med.get(("rows", v), (None,))[0]
            if m:
                x = m * 1e6 / flink
                print(f"- {v}: {m:.2f} M/s vs Flink 2.3 {flink / 1e6:.1f} M/s = {x:.1f}x "
                      f"(target {ROWS_TARGET:.0f}x: {'met' if x >= ROWS_TARGET else 'missed'})")
    if "checkpoint" in suites:
        pairs = (("off", ("1s", "100ms")), ("groupby-off", ("groupby-1s",)))
        for off_v, vs in pairs:
            for v in vs:
                target = v.endswith("1s")
                for kind, key in (("job throughput", (None,)), ("steady state", ("steady",))):
                    if key == (None,):
                        base_m = med.get(("checkpoint", off_v), (None,))[0]
                        m = med.get(("checkpoint", v), (None,))[0]
                    else:
                        base_m = med.get(("checkpoint", off_v, "steady"))
                        m = med.get(("checkpoint", v, "steady"))
                    if not (base_m and m):
                        continue
                    loss = (1 - m / base_m) * 100
                    tgt = (f" (target <= {CKPT_LOSS_TARGET:.0f} %: "
                           f"{'met' if loss <= CKPT_LOSS_TARGET else 'missed'})") if target else ""
                    print(f"- {v}, {kind}: {m:.2f} M/s vs {off_v} {base_m:.2f} M/s: loss {loss:.1f} %{tgt}")
    for r in bad:
        print(f"- WARNING: {r['suite']}/{r['variant']} round {r['round']}: status {r['status']}, check '{r['check']}'")
    loads = num(rows, "load1")
    if loads:
        print(f"- 1-minute load average at the start of the runs: median {statistics.median(loads):.2f}, "
              f"max {max(loads):.2f} (2 cores; other work on the machine shows here)")


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


CKPT = re.compile(r"checkpoint (\d+) completed \((\d+) bytes, (\d+) ms\)")


def cmd_ckpt_durations(a):
    """Checkpoint durations (end - trigger, ms) per run, from two sources merged by checkpoint id:
    the `checkpoints.history` of the `--json` summary (exact, but only the last 10 checkpoints,
    like Flink's `web.checkpoints.history`), and the `checkpoint N completed (B bytes, D ms)`
    lines `eddy local` prints each time its progress poll sees the completed count grow (the
    latest completed checkpoint's stats: every checkpoint at a 1 s interval, a sample at 100 ms).
    Arguments: the runs' `.err` logs; the `.out` next to each is read too."""
    durs, seen, expected = [], 0, 0
    for path in a:
        by_id = {}
        with open(path, errors="replace") as f:
            for line in f:
                m = CKPT.search(ANSI.sub("", line))
                if m:
                    by_id[int(m.group(1))] = int(m.group(3))
        out = path[:-len(".err")] + ".out" if path.endswith(".err") else None
        j = last_json_line(out) if out and os.path.exists(out) else None
        completed = None
        if j:
            completed = j.get("completed_checkpoints")
            hist = ((j.get("checkpoints") or {}).get("history")) or []
            for h in hist:
                if h.get("status") == "COMPLETED" and h.get("end_timestamp_ms"):
                    by_id[int(h["id"])] = int(h["end_timestamp_ms"]) - int(h["trigger_timestamp_ms"])
        durs += by_id.values()
        seen += len(by_id)
        expected += completed if completed is not None else (max(by_id) - min(by_id) + 1 if by_id else 0)
    if not durs:
        print("no checkpoint durations found")
        return
    print(json.dumps({"n": len(durs), "of_completed": expected,
                      "median_ms": statistics.median(durs), "p90_ms": pct(durs, 90),
                      "p99_ms": pct(durs, 99), "min_ms": min(durs), "max_ms": max(durs)}))


TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def ts(line):
    m = TS.match(line)
    if not m:
        return None
    return dt.datetime.fromisoformat(m.group(1)).timestamp()


def cmd_recovery(a):
    """A recovery starts at the first `task ... failed` line (TaskManager) while the job is
    RUNNING and ends at the next `switched from RESTARTING to RUNNING` (JobManager: every
    execution reported RUNNING). Secondary failures during a restart (e.g. `the consuming task is
    gone`) belong to the recovery in progress."""
    out = []
    for path in a:
        start = None
        with open(path, errors="replace") as f:
            for raw in f:
                line = ANSI.sub("", raw).strip()
                t = ts(line)
                if t is None:
                    continue
                if start is None and re.search(r" task .* failed: ", line):
                    start = t
                elif start is not None and "switched from RESTARTING to RUNNING" in line:
                    out.append((t - start) * 1000.0)
                    start = None
    if not out:
        print(json.dumps({"n": 0}))
        return
    med = statistics.median(out)
    print(json.dumps({"n": len(out), "median_ms": round(med, 3),
                      "target_ms": RECOVERY_TARGET_MS, "target_met": med < RECOVERY_TARGET_MS,
                      "p90_ms": round(pct(out, 90), 3), "min_ms": round(min(out), 3),
                      "max_ms": round(max(out), 3),
                      "all_ms": [round(x, 3) for x in out]}))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"record": cmd_record, "summary": cmd_summary, "ckpt-durations": cmd_ckpt_durations,
     "recovery": cmd_recovery, "pty-run": cmd_pty_run, "wait-idle": cmd_wait_idle}[cmd](args)


if __name__ == "__main__":
    main()
