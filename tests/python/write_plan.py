#!/usr/bin/env python3
"""Run the Python processes of a differential test's plan: each is a real
forked process with its own pid (so its own files) that defines its metrics
with prometheus_client and runs its operations.

usage: write_plan.py PLAN DIR

PLAN is JSON: {"processes": [{"writer": "python"|"muster", "metrics": [{"type",
"name", "help", "labels", "mode", "buckets"}], "ops": [[metric, [label values],
"inc"|"set"|"observe", value]]}]}; processes of other writers are skipped
(tests/differential.rs runs them with muster's write_fixture example). Values
that JSON cannot hold (NaN, infinities) come as strings.
"""

import json
import multiprocessing
import os
import sys

if len(sys.argv) != 3:
    sys.exit(__doc__)

PLAN, DIR = sys.argv[1], sys.argv[2]
# prometheus_client picks its value class at import time from this variable.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = DIR
os.makedirs(DIR, exist_ok=True)

from prometheus_client import Counter, Gauge, Histogram, Summary  # noqa: E402


def make(spec):
    kind, name, help_text = spec["type"], spec["name"], spec["help"]
    labels = spec["labels"]
    if kind == "counter":
        return Counter(name, help_text, labels, registry=None)
    if kind == "gauge":
        return Gauge(name, help_text, labels, registry=None, multiprocess_mode=spec["mode"])
    if kind == "histogram":
        return Histogram(name, help_text, labels, registry=None, buckets=spec["buckets"])
    if kind == "summary":
        return Summary(name, help_text, labels, registry=None)
    raise ValueError(f"unknown type {kind!r}")


def run(process):
    try:
        metrics = [make(spec) for spec in process["metrics"]]
        for index, values, op, value in process["ops"]:
            metric = metrics[index]
            if values:
                metric = metric.labels(*values)
            value = float(value)
            if op == "inc":
                metric.inc(value)
            elif op == "set":
                metric.set(value)
            elif op == "observe":
                metric.observe(value)
            else:
                raise ValueError(f"unknown operation {op!r}")
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(1)


def main():
    with open(PLAN, encoding="utf-8") as f:
        plan = json.load(f)
    ctx = multiprocessing.get_context("fork")
    procs = []
    for process in plan["processes"]:
        if process["writer"] != "python":
            continue
        p = ctx.Process(target=run, args=(process,))
        p.start()
        procs.append(p)
    failed = [p.pid for p in procs if (p.join() or p.exitcode) != 0]
    if failed:
        sys.exit(f"writer processes {failed} failed")


if __name__ == "__main__":
    main()
