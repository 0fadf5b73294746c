#!/usr/bin/env python3
"""Write one process's metrics of every kind into DIR and exit (a worker that died).

usage: dead_writer.py DIR SEED      (files named by this pid, or by the slot in
                                    MUSTER_WORKER_ID; prints the pid)
       dead_writer.py --collect DIR...   (Python's merge of each DIR, as JSON)
       dead_writer.py --live FLAG SEED   (a worker of `muster run`, see `live`)

Every file kind Python writes: counters (whole and fractional increments), a
histogram, a summary, and a gauge in each of the modes all, liveall, min, max,
sum, livesum, mostrecent. Values depend on SEED, so processes differ.
--collect prints {DIR: {"sample{labels}": value, ...}} from MultiProcessCollector.
"""

import json
import os
import signal
import sys


def write(directory, seed):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if os.environ.get("MUSTER_WORKER_ID"):
        # A worker of `muster run`: files named by its slot (python/muster_worker.py).
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
        import muster_worker  # noqa: F401
    from prometheus_client import Counter, Gauge, Histogram, Summary

    requests = Counter("requests", "Requests.", ["route"])
    requests.labels("/").inc(10 + seed)
    requests.labels("/items").inc(3 * seed + 1)
    cpu = Counter("cpu_seconds", "CPU time.")
    for i in range(5):
        cpu.inc(0.1 * (seed + i) + 0.013)
    latency = Histogram("latency_seconds", "Latency.", buckets=(0.01, 0.1, 1.0))
    for i in range(7):
        latency.observe(0.003 * (seed + 1) * (i + 1) + 0.0007 * i)
    size = Summary("size_bytes", "Sizes.")
    size.observe(100 + seed)
    size.observe(0.5 * seed)
    for mode, value in [("all", 1), ("liveall", 2), ("min", 3), ("max", 4), ("sum", 5),
                        ("livesum", 6), ("mostrecent", 7)]:
        Gauge("g_" + mode, "Gauge " + mode, multiprocess_mode=mode).set(value * 10 + seed)
    print(os.getpid())


def live(flag, seed):
    """A worker of `muster run` whose app does not import muster_worker, so its
    files are named by its pid: when FLAG exists as it starts, it writes into
    PROMETHEUS_MULTIPROC_DIR as a dead writer does and then creates FLAG.<pid>;
    either way it then waits until it is killed or stopped."""
    os.environ.pop("MUSTER_WORKER_ID", None)
    if os.path.exists(flag):
        write(os.environ["PROMETHEUS_MULTIPROC_DIR"], seed)
        open("%s.%d" % (flag, os.getpid()), "w").close()
    while True:
        signal.pause()


def collect(directories):
    from prometheus_client.multiprocess import MultiProcessCollector

    out = {}
    for d in directories:
        samples = {}
        for family in MultiProcessCollector(None, path=d).collect():
            for s in family.samples:
                labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
                samples["%s{%s}" % (s.name, labels)] = s.value
        out[d] = samples
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--collect"]:
        collect(sys.argv[2:])
    elif sys.argv[1:2] == ["--live"] and len(sys.argv) == 4:
        live(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3:
        write(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(__doc__)
