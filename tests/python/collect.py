#!/usr/bin/env python3
"""Print the samples of Python's MultiProcessCollector over DIR as canonical JSON.

usage: collect.py DIR [--meta]

With --meta, print [family, type, help] per family instead of samples.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from canonical import dump_samples, meta_line, sample_line  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402


def main():
    args = sys.argv[1:]
    meta = "--meta" in args
    args = [a for a in args if a != "--meta"]
    if len(args) != 1:
        sys.exit(__doc__)
    collector = MultiProcessCollector(None, path=args[0])
    lines = []
    for family in collector.collect():
        if meta:
            lines.append(meta_line(family.name, family.type, family.documentation))
            continue
        for s in family.samples:
            lines.append(sample_line(s.name, s.labels, s.value))
    dump_samples(lines, sys.stdout)


if __name__ == "__main__":
    main()
