"""Checks that muster's scrape of a directory has the same samples as
Python's (order and float formatting aside).

    python compare.py PYTHON.txt MUSTER.txt

Exits non-zero and prints the first differences if they differ.
muster's own metrics (`muster_*`: scrape errors, the exporter's scrape
duration) are ignored: Python has no such metrics.
"""

import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def samples(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("muster_"):
            continue
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in out:
                raise SystemExit("%s: duplicate sample %r" % (path, key))
            out[key] = s.value
    return out


def same(a, b):
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def main():
    py, mu = samples(sys.argv[1]), samples(sys.argv[2])
    problems = []
    for k in sorted(py.keys() - mu.keys())[:5]:
        problems.append("only in python: %r = %r" % (k, py[k]))
    for k in sorted(mu.keys() - py.keys())[:5]:
        problems.append("only in muster: %r = %r" % (k, mu[k]))
    for k in sorted(py.keys() & mu.keys()):
        if not same(py[k], mu[k]):
            problems.append("differs: %r python %r muster %r" % (k, py[k], mu[k]))
            if len(problems) > 10:
                break
    if problems:
        print("\n".join(problems))
        sys.exit("MISMATCH: %d python samples, %d muster samples" % (len(py), len(mu)))
    print("same samples: %d" % len(py))


if __name__ == "__main__":
    main()
