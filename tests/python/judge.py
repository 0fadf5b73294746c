#!/usr/bin/env python3
"""The differential tests' judge: Python's merge of a directory, and muster's
expositions of it read by Python's own parsers, in one process.

usage: judge.py DIR TEXT_FILE OPENMETRICS_FILE

Prints one JSON object: {"python": [...], "python_meta": [...], "text": [...],
"text_meta": [...], "openmetrics": [...], "openmetrics_meta": [...]}, each a
sorted list of canonical lines (see canonical.py): the samples and the
families ([name, type, help]) of collect.py's merge and of parse.py's reading
of each exposition. A parser that rejects an exposition is an error (exit 1,
with the reason).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collect import merged  # noqa: E402
from parse import parsed  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    directory, text_file, om_file = sys.argv[1:]
    out = {}
    out["python"], out["python_meta"] = merged(directory)
    for fmt, path in (("text", text_file), ("openmetrics", om_file)):
        with open(path, encoding="utf-8") as f:
            exposition = f.read()
        try:
            out[fmt], out[fmt + "_meta"] = parsed(exposition, fmt)
        except Exception as e:  # the parsers raise ValueError and others
            sys.exit(f"prometheus_client's {fmt} parser rejected muster's exposition: {e!r}")
    json.dump({k: sorted(v) for k, v in out.items()}, sys.stdout)


if __name__ == "__main__":
    main()
