#!/usr/bin/env python3
"""Deterministic generator of an English-like text for the word-count benchmark.

    bench/gen-text.py [--mb 200] [--seed 42] [--out bench/out/text-200mb.txt]

The vocabulary is about 5,000 words: 150 common English words at the top ranks, then
pronounceable made-up words built from syllables. Words are drawn from a Zipf-Mandelbrot
distribution (p(r) ~ 1/(r + 2.7)), about 2 % of them Capitalized and 0.5 % UPPER-case, and they
are followed by punctuation (`,` `.` `;` `:` `!` `?` `'s` quotes, parentheses, dashes) now
and then. Lines hold 6 to 18 words (about 40 to 120 characters). The same seed and size always
give the same bytes (Python's `random` is stable across versions for `random()` and `choices`),
so `sha256sum` of the output identifies the input of a benchmark run.
It never writes anything but the output file (through a `.tmp` file renamed at the end).
"""

import argparse
import os
import random
import sys

COMMON = """the of and to a in is it you that he was for on are with as i his they be at one
have this from or had by not word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write would
like so these her long make thing see him two has look more day could go come did number sound
no most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every good
me give our under name very through just form sentence great think say help low line differ
turn cause much mean before move right boy old too same tell does set three want air well also
play small end put home read hand port large spell add even land here must big high such follow
act why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father""".split()

ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v",
          "w", "z", "br", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch", "sp"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ou", "oo", "y"]
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "x"]

SUFFIXES = ["", ",", ".", ";", ":", "!", "?", "'s", "\"", ")", "-"]
SUFFIX_WEIGHTS = [86.0, 6.0, 4.5, 0.6, 0.4, 0.5, 0.6, 0.6, 0.3, 0.2, 0.3]


def vocabulary(rng, size):
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                    for _ in range(rng.choice([1, 2, 2, 2, 3, 3, 4])))
        if len(w) >= 2 and w not in seen:
            seen.add(w)
            words.append(w)
    return words


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="size in MB (10^6 bytes), default 200")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--vocabulary", type=int, default=5000, help="distinct base words")
    ap.add_argument("--out", default=None, help="default bench/out/text-<mb>mb.txt")
    a = ap.parse_args()
    target = int(a.mb * 1_000_000)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "out",
                                f"text-{a.mb:g}mb.txt")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    rng = random.Random(a.seed)
    base = vocabulary(rng, a.vocabulary)
    # Case variants are separate entries of the draw: lower 97.5 %, Capitalized 2 %, UPPER 0.5 %.
    forms, weights = [], []
    for rank, w in enumerate(base):
        p = 1.0 / (rank + 2.7)
        forms += [w, w.capitalize(), w.upper()]
        weights += [p * 0.975, p * 0.02, p * 0.005]
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    scum, acc = [], 0.0
    for w in SUFFIX_WEIGHTS:
        acc += w
        scum.append(acc)

    written = 0
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        while written < target:
            k = 200_000
            words = rng.choices(forms, cum_weights=cum, k=k)
            sufs = rng.choices(SUFFIXES, cum_weights=scum, k=k)
            tokens = list(map(str.__add__, words, sufs))
            lines = []
            i = 0
            while i < k:
                n = rng.randint(6, 18)
                lines.append(" ".join(tokens[i:i + n]))
                i += n
            chunk = "\n".join(lines) + "\n"
            if written + len(chunk) > target:
                # Cut at the last line end that fits, so the file is whole lines.
                cut = chunk.rfind("\n", 0, target - written)
                chunk = chunk[:cut + 1] if cut >= 0 else ""
                f.write(chunk)
                written += len(chunk)
                break
            f.write(chunk)
            written += len(chunk)
    os.replace(tmp, out)
    print(f"{out}: {written} bytes, vocabulary {len(base)} words x 3 case forms, seed {a.seed}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
