"""Self-tests of the oracles on made-up outputs and logs: each oracle must catch what it is there
to catch (a test that cannot fail is a defect). `chaos.py` runs them before every campaign;
alone: `python3 scripts/chaos/test_oracles.py`.
"""

import datetime as dt
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oracles  # noqa: E402


def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


class Witness(unittest.TestCase):
    def test_holds_and_breaks(self):
        with tempfile.TemporaryDirectory() as d:
            write(d, "part-0-0", "0,1,1\n0,2,2\n1,1,1\n")
            write(d, ".part-0-1.pending", "1,2,2\n")  # uncommitted: not read
            self.assertEqual(oracles.sequence_witness(d, 2, 2)[:2], (1, 0))  # (1, 2) missing
            write(d, "part-0-1", "1,2,2\n")
            self.assertEqual(oracles.sequence_witness(d, 2, 2)[:2], (0, 0))
            write(d, "part-1-0", "1,2,3\n")  # a duplicate that was also counted twice
            self.assertEqual(oracles.sequence_witness(d, 2, 2)[:2], (0, 2))


class Golden(unittest.TestCase):
    def test_multiset(self):
        with tempfile.TemporaryDirectory() as d:
            write(d, "part-0-0", "a\nb\nb\n")
            self.assertEqual(oracles.compare_golden(d, ["a", "b", "b"])[:2], (0, 0))
            self.assertEqual(oracles.compare_golden(d, ["a", "b", "c"])[:2], (1, 1))


class Committed(unittest.TestCase):
    def test_deleted_and_changed(self):
        with tempfile.TemporaryDirectory() as d:
            write(d, "part-0-0", "x\ny\n")
            write(d, "part-0-1", "z\n")
            write(d, ".part-0-2.inprogress", "w\n")
            w = oracles.CommittedFiles([d])
            w.poll()
            os.unlink(os.path.join(d, ".part-0-2.inprogress"))  # hidden files may come and go
            w.poll()
            self.assertEqual(w.violations, [])
            os.unlink(os.path.join(d, "part-0-0"))
            write(d, "part-0-1", "changed\n")
            os.utime(os.path.join(d, "part-0-1"), ns=(1, 1))
            w.poll()
            self.assertEqual(sorted(v[1] for v in w.violations),
                             ["changed after it was committed", "deleted after it was committed"])
            self.assertEqual(w.retracted(), 3)


def log_line(t, text):
    return f"\x1b[2m2026-01-01T00:00:{t:09.6f}Z\x1b[0m \x1b[32m INFO\x1b[0m {text}\n"


class SplitBrain(unittest.TestCase):
    JOB = "ab" * 16

    def logs(self, d, jm0, jm1):
        paths = []
        for i, lines in enumerate([jm0, jm1]):
            p = os.path.join(d, f"jm{i}.log")
            with open(p, "w") as f:
                f.writelines(log_line(t, x) for t, x in lines)
            paths.append((i, p))
        return paths

    def test_handover_is_clean(self):
        with tempfile.TemporaryDirectory() as d:
            logs = self.logs(d, [
                (1, "JobManager 127.0.0.1 granted leadership (session aaaa)"),
                (2, f"job {self.JOB}: completed checkpoint 1 (10 bytes, 1 ms from trigger)"),
                (3, "JobManager stepping down: leadership revoked; suspending 1 jobs"),
            ], [
                (4, "JobManager 127.0.0.1 granted leadership (session bbbb)"),
                (5, f"job {self.JOB}: completed checkpoint 2 (10 bytes, 1 ms from trigger)"),
            ])
            self.assertEqual(oracles.split_brain(logs, []), ([], []))

    def test_overlapping_writes_are_caught(self):
        with tempfile.TemporaryDirectory() as d:
            logs = self.logs(d, [
                (1, "JobManager 127.0.0.1 granted leadership (session aaaa)"),
                (6, f"job {self.JOB}: completed checkpoint 3 (10 bytes, 1 ms from trigger)"),
            ], [
                (4, "JobManager 127.0.0.1 granted leadership (session bbbb)"),
                (5, f"job {self.JOB}: completed checkpoint 2 (10 bytes, 1 ms from trigger)"),
            ])
            violations, ambiguous = oracles.split_brain(logs, [])
            self.assertEqual(len(violations), 1)
            self.assertIn("checkpoint 3", violations[0])
            # The same write, logged right after the tool resumed JobManager 0 from SIGSTOP.
            base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
            violations, ambiguous = oracles.split_brain(logs, [(0, base + 2.0, base + 5.8)])
            self.assertEqual((len(violations), len(ambiguous)), (0, 1))

    def test_a_late_line_of_a_write_the_next_leader_recovered_is_no_violation(self):
        # CI run 271041745: the paused leader's "completed checkpoint 41" line was logged at its
        # resume, after the next grant, but the next leader had recovered checkpoint 41 from
        # the HA store, so the write was accepted before the grant.
        with tempfile.TemporaryDirectory() as d:
            logs = self.logs(d, [
                (1, "JobManager 127.0.0.1 granted leadership (session aaaa)"),
                (6, f"job {self.JOB}: completed checkpoint 41 (10 bytes, 1 ms from trigger)"),
            ], [
                (4, "JobManager 127.0.0.1 granted leadership (session bbbb)"),
                (4.1, f"job {self.JOB}: recovered with retained checkpoints [34, 40, 41]; restoring from Some(41)"),
            ])
            self.assertEqual(oracles.split_brain(logs, []), ([], []))
            # Not recovered by the next leader: still a violation.
            logs = self.logs(d, [
                (1, "JobManager 127.0.0.1 granted leadership (session aaaa)"),
                (6, f"job {self.JOB}: completed checkpoint 41 (10 bytes, 1 ms from trigger)"),
            ], [
                (4, "JobManager 127.0.0.1 granted leadership (session bbbb)"),
                (4.1, f"job {self.JOB}: recovered with retained checkpoints [34, 40]; restoring from Some(40)"),
            ])
            self.assertEqual(len(oracles.split_brain(logs, [])[0]), 1)
            # Logged a moment before the tool's record of the SIGCONT: ambiguous, not counted.
            base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
            violations, ambiguous = oracles.split_brain(logs, [(0, base + 2.0, base + 6.001)])
            self.assertEqual((len(violations), len(ambiguous)), (0, 1))

    def test_write_while_not_leading_is_caught(self):
        with tempfile.TemporaryDirectory() as d:
            logs = self.logs(d, [
                (1, "JobManager 127.0.0.1 granted leadership (session aaaa)"),
                (2, "JobManager stepping down: leadership revoked; suspending 1 jobs"),
                (3, f"job sequence ({self.JOB}) switched from RUNNING to FINISHED"),
            ], [])
            self.assertEqual(len(oracles.split_brain(logs, [])[0]), 1)


def run():
    """Runs the self-tests quietly; returns (ok, report)."""
    import io
    out = io.StringIO()
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(stream=out, verbosity=0).run(suite)
    return result.wasSuccessful(), out.getvalue()


if __name__ == "__main__":
    unittest.main()
