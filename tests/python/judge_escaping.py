#!/usr/bin/env python3
"""The escaping differential's judge: Python's own exposition of a
directory's merge with each name escaping scheme, against muster's.

usage: judge_escaping.py DIR EXPOSITIONS_DIR

EXPOSITIONS_DIR holds muster's expositions of DIR: `text-SCHEME.txt`
(`muster scrape --format text-1.0.0 --escaping SCHEME`) and
`openmetrics-SCHEME.txt`, for SCHEME in allow-utf-8, underscores, dots,
values.

Prints one JSON object: for each `FORMAT-SCHEME`, {"python": [...],
"muster": [...]}: the lines of each exposition, sorted, with the labels of
each sample line sorted (`{"name"}` syntax read as a name), so two
expositions compare equal when they say the same in any order. The
reference:

- text: Python's `generate_latest(registry, escaping=SCHEME)`, every line;
- openmetrics, allow-utf-8: Python's OpenMetrics `generate_latest`, every
  line;
- openmetrics, other schemes: the sample lines of Python's text exposition
  with the same scheme. Python's OpenMetrics encoder escapes sample names
  with the label-name rules (`:` replaced) and, with `values`, legacy names
  too (`g_ok` becomes `U__g__ok`, away from its family `g_ok`); muster shows
  a sample name as its text format does.

Where Python's own parser reads Python's exposition (same format, same
scheme), it must read muster's too (exit 1 otherwise). Not always possible:
with `dots`, a label name starting with `_` becomes one starting with `__`,
which the parser refuses in both; with `dots` and `values` the OpenMetrics
parser finds sample names that clash with their family's.

muster's own family (muster_scrape_errors, under any escaping) is left out.
Python's merge lists a sample twice where a gauge has a label named `pid`;
the reference keeps the line read last, as collect.py does.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collect import merged_families  # noqa: E402
from prometheus_client.exposition import generate_latest as text_exposition  # noqa: E402
from prometheus_client.openmetrics.exposition import (  # noqa: E402
    generate_latest as openmetrics_exposition,
)
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import (  # noqa: E402
    text_string_to_metric_families as parse_text,
)
from prometheus_client.registry import CollectorRegistry  # noqa: E402

SCHEMES = ["allow-utf-8", "underscores", "dots", "values"]


class Families:
    """A collector that returns fixed families."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def own(name):
    return name.strip('"').replace("__", "_").startswith(("muster_scrape_errors", "U_muster"))


def token(line, i):
    """A quoted string (kept as written, escapes and all) or a bare word at
    `i`, and the index after it."""
    if line[i] == '"':
        j = i + 1
        while line[j] != '"':
            j += 2 if line[j] == "\\" else 1
        return line[i:j + 1], j + 1
    j = i
    while line[j] not in '=,}':
        j += 1
    return line[i:j], j


def sample(line):
    """(name, sorted labels, rest of the line) of a sample line."""
    i, name, labels = 0, None, []
    if line[0] != "{":
        while line[i] not in "{ ":
            i += 1
        name = line[:i]
    if line[i] == "{":
        i += 1
        while line[i] != "}":
            tok, i = token(line, i)
            if line[i] == "=":
                value, i = token(line, i + 1)
                labels.append((tok, value))
            else:
                name = tok
            if line[i] == ",":
                i += 1
        i += 1
    return name, tuple(sorted(labels)), line[i:].strip()


def lines(text, samples_only=False):
    """The exposition's lines in a canonical order; a sample listed twice
    keeps its last line."""
    comments, samples = [], {}
    for line in text.splitlines():
        if not line or line == "# EOF":
            continue
        if line.startswith("#"):
            if not samples_only and not own(line.split(" ")[2]):
                comments.append(line)
            continue
        name, labels, rest = sample(line)
        if own(name):
            continue
        samples.pop((name, labels), None)
        samples[(name, labels)] = rest
    out = comments + [
        f"{name}{{{','.join(f'{k}={v}' for k, v in labels)}}} {rest}"
        for (name, labels), rest in samples.items()
    ]
    return sorted(out)


def parses(text, fmt):
    parser = parse_text if fmt == "text" else parse_openmetrics
    try:
        for _ in parser(text):
            pass
        return None
    except Exception as e:  # the parsers raise ValueError and others
        return repr(e)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    directory, expositions = sys.argv[1:]
    registry = CollectorRegistry()
    registry.register(Families(merged_families(directory)))
    out = {}
    for scheme in SCHEMES:
        python = {
            "text": text_exposition(registry, scheme).decode("utf-8"),
            "openmetrics": openmetrics_exposition(registry, scheme).decode("utf-8"),
        }
        for fmt in ("text", "openmetrics"):
            with open(os.path.join(expositions, f"{fmt}-{scheme}.txt"), encoding="utf-8") as f:
                ours = f.read()
            if fmt == "text" or scheme == "allow-utf-8":
                python_lines, muster_lines = lines(python[fmt]), lines(ours)
            else:
                python_lines, muster_lines = lines(python["text"], True), lines(ours, True)
            muster_error = parses(ours, fmt)
            if parses(python[fmt], fmt) is None and muster_error is not None:
                sys.exit(f"prometheus_client's {fmt} parser rejected muster's {scheme} exposition "
                         f"(and read Python's): {muster_error}")
            out[f"{fmt}-{scheme}"] = {"python": python_lines, "muster": muster_lines}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
