#!/usr/bin/env python3
"""Parse an exposition on stdin with prometheus_client's own parsers and
print its samples as canonical JSON (see canonical.py).

usage: parse.py text|openmetrics [--meta] [--canonical-le] < exposition

- text: prometheus_client.parser.text_string_to_metric_families
- openmetrics: prometheus_client.openmetrics.parser (strict: # EOF, types,
  canonical +Inf, integer buckets...). `_created` samples are dropped.
The family `muster_scrape_errors` (muster's own) is dropped.
--meta prints [family, type, help] per family instead of samples.
--canonical-le rewrites `le` labels as Python writes them (floatToGoString),
for encoders that format bucket bounds differently but equivalently.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from canonical import dump_samples, meta_line, sample_line  # noqa: E402
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import (  # noqa: E402
    text_string_to_metric_families as parse_text,
)
from prometheus_client.utils import floatToGoString  # noqa: E402

OWN_FAMILIES = {"muster_scrape_errors"}


def parsed(text, fmt, canonical_le=False):
    """(samples, families) of an exposition in `fmt` (`text` or
    `openmetrics`), as canonical lines; raises if it does not parse."""
    parser = parse_text if fmt == "text" else parse_openmetrics
    lines, meta = [], []
    seen_families = set()
    for family in parser(text):
        if family.name in OWN_FAMILIES:
            continue
        if family.name in seen_families:
            raise ValueError(f"family {family.name!r} appears twice in the exposition")
        seen_families.add(family.name)
        meta.append(meta_line(family.name, family.type, family.documentation))
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            labels = dict(s.labels)
            if canonical_le and "le" in labels:
                labels["le"] = floatToGoString(float(labels["le"]))
            lines.append(sample_line(s.name, labels, s.value))
    return lines, meta


def main():
    args = sys.argv[1:]
    meta = "--meta" in args
    canonical_le = "--canonical-le" in args
    args = [a for a in args if a not in ("--meta", "--canonical-le")]
    if len(args) != 1 or args[0] not in ("text", "openmetrics"):
        sys.exit(__doc__)
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        samples, families = parsed(text, args[0], canonical_le)
    except ValueError as e:
        sys.exit(f"the {args[0]} parser rejected the exposition: {e}")
    dump_samples(families if meta else samples, sys.stdout)


if __name__ == "__main__":
    main()
