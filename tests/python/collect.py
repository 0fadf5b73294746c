#!/usr/bin/env python3
"""Print the samples of Python's MultiProcessCollector over DIR as canonical JSON.

usage: collect.py DIR [--meta]

With --meta, print [family, type, help] per family instead of samples.

What is printed is what Python's exposition of the merge shows:

- metric and label names escaped as prometheus_client's exposition escapes
  them by default (`escape_metric_name`, `escape_label_name`: `http.requests`
  is shown as `http_requests`);
- the files are read in sorted order (Python reads them in directory order,
  so where files disagree its answer varies from one directory to the next;
  muster documents the sorted order);
- where files disagree on a family's type, the entries of files whose type
  differs from the first file's are left out (muster's documented rule;
  Python would mix them into the first file's family, under another type);
- a sample Python lists twice with the same labels (a gauge with a label
  named `pid`, whose value the process id replaces) is shown once, with the
  value read last.
"""

import glob
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from canonical import dump_samples, meta_line, sample_line  # noqa: E402
from prometheus_client.mmap_dict import MmapedDict  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.openmetrics.exposition import (  # noqa: E402
    escape_label_name,
    escape_metric_name,
)


def file_type(path):
    return os.path.basename(path).split("_")[0]


def without_type_conflicts(files, scratch):
    """The files, with entries of a family whose first file (in sorted
    order) has another type left out: copies where needed."""
    first_type = {}
    contents = []
    for f in files:
        values = list(MmapedDict.read_all_values_from_file(f))
        contents.append(values)
        for key, _, _, _ in values:
            first_type.setdefault(json.loads(key)[0], file_type(f))
    out = []
    for f, values in zip(files, contents):
        keep = [v for v in values if first_type[json.loads(v[0])[0]] == file_type(f)]
        if len(keep) == len(values):
            out.append(f)
            continue
        copy = os.path.join(scratch, os.path.basename(f))
        d = MmapedDict(copy)
        for key, value, timestamp, _ in keep:
            d.write_value(key, value, timestamp)
        d.close()
        out.append(copy)
    return out


def merged_families(path):
    """Python's merged families (names as written) of the directory `path`:
    files in sorted order, type conflicts resolved by muster's rule."""
    files = sorted(glob.glob(os.path.join(path, "*.db")))
    with tempfile.TemporaryDirectory() as scratch:
        return MultiProcessCollector.merge(without_type_conflicts(files, scratch))


def merged(path):
    """(samples, families) of the merge of the directory `path`, as
    canonical lines (see canonical.py)."""
    families = merged_families(path)
    lines, meta = [], []
    for family in families:
        meta.append(meta_line(escape_metric_name(family.name), family.type, family.documentation))
        samples = {}
        for s in family.samples:
            labels = {escape_label_name(k): v for k, v in s.labels.items()}
            key = (escape_metric_name(s.name), tuple(sorted(labels.items())))
            samples.pop(key, None)
            samples[key] = s.value
        for (sample_name, labels), value in samples.items():
            lines.append(sample_line(sample_name, dict(labels), value))
    return lines, meta


def main():
    args = sys.argv[1:]
    meta = "--meta" in args
    args = [a for a in args if a != "--meta"]
    if len(args) != 1:
        sys.exit(__doc__)
    samples, families = merged(args[0])
    dump_samples(families if meta else samples, sys.stdout)


if __name__ == "__main__":
    main()
