"""Canonical JSON for comparing metric samples across implementations.

One sample is ``[sample_name, {label: value, ...}, value]`` where the value
is ``repr(float(v))``, or ``"NaN"``, ``"+Inf"``, ``"-Inf"``; the list is
sorted and printed one sample per line, so two outputs compare as text and
a difference shows as a line diff.
"""

import json
import math


def value_string(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def sample_line(name, labels, value):
    return json.dumps([name, dict(sorted(labels.items())), value_string(value)],
                      sort_keys=True, ensure_ascii=True)


def dump_samples(lines, out):
    lines = sorted(lines)
    out.write("[\n")
    out.write(",\n".join(lines))
    out.write("\n]\n" if lines else "]\n")


def meta_line(name, typ, help_text):
    return json.dumps([name, typ, help_text], ensure_ascii=True)
