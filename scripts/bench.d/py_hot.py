"""Times the hot path of Python's prometheus_client in multiprocess mode
(what a gunicorn worker pays per update), timeit-style.

    python py_hot.py OUT.json [--number N]

Same operations as crates/muster-metrics/benches/hot_path.rs: counter inc on
a child, labelled lookup + inc (2 methods x 100 routes x 3 statuses,
cycled), histogram observe (default buckets), gauge set.
"""

import argparse
import json
import os
import tempfile
import timeit


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--number", type=int, default=20000)
    a = p.parse_args()
    d = tempfile.mkdtemp(prefix="muster-bench-py-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    from prometheus_client import Counter, Gauge, Histogram

    c = Counter("bench_counter", "a counter", registry=None)
    g = Gauge("bench_gauge", "a gauge", multiprocess_mode="all", registry=None)
    h = Histogram("bench_duration_seconds", "durations", registry=None)
    fam = Counter("bench_http_requests", "requests", ["method", "route", "status"], registry=None)
    sets = [
        (m, "/api/v1/resource_%03d/{id}" % r, s)
        for s in ("200", "404", "500")
        for m in ("GET", "POST")
        for r in range(100)
    ]
    for s in sets:
        fam.labels(*s).inc()
    values = [0.001 * 12000 ** (i / 63) for i in range(64)]
    state = {"i": 0}

    def labelled():
        i = state["i"] = (state["i"] + 1) % len(sets)
        fam.labels(*sets[i]).inc()

    def observe():
        i = state["i"] = (state["i"] + 1) % len(values)
        h.observe(values[i])

    def base():
        i = state["i"] = (state["i"] + 1) % len(values)
        return values[i]

    cases = {
        "counter_inc": c.inc,
        "gauge_set": lambda: g.set(1.5),
        "labelled_inc": labelled,
        "histogram_observe": observe,
    }
    n = a.number
    result = {}
    for name, fn in cases.items():
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n
        result[name] = best * 1e9
        print("python %-18s %8.0f ns" % (name, result[name]))
    # The cost of the loop bookkeeping itself, for reference.
    result["loop_overhead"] = min(timeit.repeat(base, number=n, repeat=5)) / n * 1e9
    with open(a.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
