"""Times Python's MultiProcessCollector + generate_latest on a directory,
timeit-style, in one process.

    python py_scrape.py DIR RUNS OUT.json [--text OUT.txt]

Each run is what a Python /metrics handler does per scrape: a fresh
CollectorRegistry with a MultiProcessCollector, then generate_latest.
Writes {"runs": [...wall seconds], "median": s, "min": s, "cpu_runs": [...],
"cpu_median": s, "lines": n, "bytes": n}; "cpu" is the thread's CPU time
(time.thread_time: user + system), which other load on the machine affects less.
"""

import argparse
import gc
import json
import statistics
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def scrape(path):
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def timed_scrape(path):
    """One scrape after a garbage collection: (wall seconds, CPU seconds of
    this thread)."""
    gc.collect()
    c0 = time.thread_time()
    t0 = time.perf_counter()
    scrape(path)
    return time.perf_counter() - t0, time.thread_time() - c0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("runs", type=int)
    p.add_argument("out")
    p.add_argument("--text")
    a = p.parse_args()
    body = scrape(a.dir)  # warm-up: page cache, imports, allocator
    if a.text:
        with open(a.text, "wb") as f:
            f.write(body)
    runs, cpu_runs = [], []
    for _ in range(a.runs):
        wall, cpu = timed_scrape(a.dir)
        runs.append(wall)
        cpu_runs.append(cpu)
    result = {
        "runs": runs,
        "median": statistics.median(runs),
        "min": min(runs),
        "cpu_runs": cpu_runs,
        "cpu_median": statistics.median(cpu_runs),
        "lines": body.count(b"\n"),
        "bytes": len(body),
    }
    with open(a.out, "w") as f:
        json.dump(result, f)
    print("python %s: median %.1f ms wall, %.1f ms CPU over %d runs, %d lines" % (
        a.dir, result["median"] * 1e3, result["cpu_median"] * 1e3, a.runs, result["lines"]))


if __name__ == "__main__":
    main()
