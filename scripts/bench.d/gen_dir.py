"""Writes a multiprocess directory the way a gunicorn server with W workers
would, using the real Python prometheus_client.

    python gen_dir.py DIR WORKERS [--routes 100] [--recycles N [--recycled-routes 20]]

Every worker is its own forked process (its own pid, so its own files) and
defines, after fork, as an application would:

- http_requests_total{method,route,status}   Counter  (2 methods x R routes x 3 statuses)
- http_request_duration_seconds{method,route} Histogram, default buckets (2 x R)
- app_route_cache_entries{route}             Gauge, multiprocess_mode='all' (R)
- http_requests_in_progress{route}           Gauge, multiprocess_mode='livesum' (R)

so each worker writes 4 files (counter_, histogram_, gauge_all_,
gauge_livesum_<pid>.db). Values are pseudo-random but deterministic per
worker index.

With --recycles N, N more workers come and go first, as gunicorn's
--max-requests makes them: each serves traffic on --recycled-routes of the
routes (chosen at random), writes the same metrics, exits, and is then marked
dead with `multiprocess.mark_process_dead(pid)` as gunicorn's `child_exit`
hook does (prometheus_flask_exporter's set-up), which removes its live-gauge
file and leaves its counter, histogram and gauge_all files behind.
"""

import argparse
import multiprocessing
import os
import random
import shutil
import sys

METHODS = ["GET", "POST"]
STATUSES = ["200", "404", "500"]


def worker(args):
    index, routes, served = args
    # Imported after fork and after PROMETHEUS_MULTIPROC_DIR is set, as in a
    # gunicorn worker; registry=None keeps the default registry out of it.
    from prometheus_client import Counter, Gauge, Histogram

    rng = random.Random(index)
    requests = Counter(
        "http_requests", "Total HTTP requests.", ["method", "route", "status"], registry=None
    )
    durations = Histogram(
        "http_request_duration_seconds",
        "HTTP request latency in seconds.",
        ["method", "route"],
        registry=None,
    )
    cache = Gauge(
        "app_route_cache_entries",
        "Entries in the per-worker route cache.",
        ["route"],
        multiprocess_mode="all",
        registry=None,
    )
    in_progress = Gauge(
        "http_requests_in_progress",
        "HTTP requests being served.",
        ["route"],
        multiprocess_mode="livesum",
        registry=None,
    )
    chosen = range(routes) if served is None else sorted(rng.sample(range(routes), served))
    for r in chosen:
        route = "/api/v1/resource_%03d/{id}" % r
        for method in METHODS:
            for status in STATUSES:
                requests.labels(method, route, status).inc(rng.randint(1, 5000))
            h = durations.labels(method, route)
            for _ in range(5):
                h.observe(rng.lognormvariate(-3.0, 1.5))
        cache.labels(route).set(rng.randint(0, 1000))
        in_progress.labels(route).set(rng.randint(0, 3))
    return os.getpid()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("workers", type=int)
    p.add_argument("--routes", type=int, default=100)
    p.add_argument("--recycles", type=int, default=0)
    p.add_argument("--recycled-routes", type=int, default=20)
    a = p.parse_args()
    if a.recycles and not 0 < a.recycled_routes <= a.routes:
        p.error("--recycled-routes must be between 1 and --routes")
    if os.path.exists(a.dir):
        shutil.rmtree(a.dir)
    os.makedirs(a.dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = a.dir
    ctx = multiprocessing.get_context("fork")
    # One task per process: every worker gets a fresh pid, as gunicorn's do.
    with ctx.Pool(processes=os.cpu_count() or 2, maxtasksperchild=1) as pool:
        dead = pool.map(worker, [(a.workers + i, a.routes, a.recycled_routes)
                                 for i in range(a.recycles)], chunksize=1)
        live = pool.map(worker, [(i, a.routes, None) for i in range(a.workers)], chunksize=1)
    if dead:
        # Imported only now: the workers above were forked from a parent that
        # had not loaded prometheus_client, as gunicorn's are (without --preload).
        from prometheus_client import multiprocess

        for pid in dead:
            multiprocess.mark_process_dead(pid, a.dir)
    pids = dead + live
    if len(set(pids)) != len(pids):
        sys.exit("workers shared a pid: %d distinct of %d" % (len(set(pids)), len(pids)))
    files = os.listdir(a.dir)
    size = sum(os.path.getsize(os.path.join(a.dir, f)) for f in files)
    print("%s: %d workers x %d routes, %d recycled workers x %d routes, %d files, %.1f MiB" % (
        a.dir, a.workers, a.routes, a.recycles, a.recycled_routes if a.recycles else 0,
        len(files), size / 2**20))


if __name__ == "__main__":
    main()
