#!/usr/bin/env python3
"""Checks the exactly-once witness on the output of the `sequence` job.

Usage: scripts/witness.py DIR KEYS PER_KEY

Reads every committed part file in DIR (files starting with '.' are uncommitted and skipped),
each line `key,seq,count`. The output is correct iff every key has each seq in 1..PER_KEY exactly
once and count == seq on every line. Exits 0 when it holds, 1 otherwise.
"""
import collections
import os
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out_dir, keys, per_key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seen = collections.Counter()
    wrong = 0
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("."):
            continue
        with open(os.path.join(out_dir, name)) as f:
            for line in f:
                key, seq, count = (int(x) for x in line.strip().split(","))
                seen[(key, seq)] += 1
                wrong += seq != count
    missing = sum(1 for k in range(keys) for s in range(1, per_key + 1) if seen[(k, s)] == 0)
    dups = sum(n - 1 for n in seen.values() if n > 1)
    ok = missing == 0 and dups == 0 and wrong == 0
    print(f"witness {'HOLDS' if ok else 'BROKEN'}: {sum(seen.values())} lines, "
          f"{missing} missing, {dups} duplicates, {wrong} with count != seq")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
