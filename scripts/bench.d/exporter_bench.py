"""Exporter benchmark of scripts/bench: `muster exporter` against Python's
MultiProcessCollector served over HTTP, on the same directories written by
Python workers, scraped the way Prometheus scrapes.

    python exporter_bench.py --muster target/release/muster --out RESULTS/exporter.json \
        NAME=DIR:RUNS [NAME=DIR:RUNS ...]

For each directory, two servers run side by side on 127.0.0.1:

- muster: `muster exporter --dir DIR --bind 127.0.0.1:PORT` (one long-lived
  incremental collector);
- Python: py_exporter.py, i.e. `prometheus_client.start_http_server` with a
  registry holding `MultiProcessCollector(registry, path=DIR)`: what
  prometheus_flask_exporter's `GunicornPrometheusMetrics` starts in a gunicorn
  master, and what the prometheus_client docs set up for gunicorn.

Each scrape is `curl` on a new connection with Prometheus 2's request headers
(`Accept` preferring OpenMetrics, `Accept-Encoding: gzip`); the time is curl's
`time_total` (connect to the last byte of the body). The first scrape after a
server starts is reported apart ("first"): for muster it is the one that parses
every file; Python parses every file on every scrape. Then RUNS more scrapes of
each server, alternating, give the medians. The servers' bodies in the text
format are compared sample by sample (compare.py) before timing.

Every process started here is killed on exit, error or signal.
"""

import argparse
import atexit
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile

from http_bench import Server, free_port, kill_all, log, on_signal

HERE = os.path.dirname(os.path.abspath(__file__))
# What Prometheus 2.x (Debian's 2.42) sends when it scrapes a target.
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
               "application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def curl_scrape(port, out=os.devnull, prometheus=True):
    """One GET /metrics on a new connection; (seconds, status, bytes on the wire)."""
    argv = ["curl", "-sS", "--max-time", "120", "-o", out,
            "-w", "%{time_total} %{http_code} %{size_download}"]
    if prometheus:
        argv += ["-H", "Accept: " + PROM_ACCEPT, "-H", "Accept-Encoding: gzip"]
    argv.append("http://127.0.0.1:%d/metrics" % port)
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit("curl on port %d failed: %s" % (port, r.stderr.strip()))
    secs, status, size = r.stdout.split()
    if status != "200":
        raise SystemExit("GET /metrics on port %d: status %s" % (port, status))
    return float(secs), int(size)


def bench_dir(args, name, path, runs, tmp):
    files = len([f for f in os.listdir(path) if f.endswith(".db")])
    mport, pport = free_port(), free_port()
    muster = Server("exporter_muster_" + name,
                    [args.muster, "exporter", "--dir", path, "--bind", "127.0.0.1:%d" % mport],
                    mport, logdir=tmp)
    python = Server("exporter_python_" + name,
                    [sys.executable, os.path.join(HERE, "py_exporter.py"), path, str(pport)],
                    pport, logdir=tmp)
    # Each server's first scrape, before anything else reads the directory
    # through it: wait for the port only, then time that scrape.
    first = {}
    for server in (muster, python):
        server.wait_ready(connect_only=True)
        first[server.name], _ = curl_scrape(server.port)
    log("%s: %d files; first scrape: muster %.1f ms, Python %.1f ms" % (
        name, files, first[muster.name] * 1e3, first[python.name] * 1e3))

    # Same samples (text format, uncompressed), muster's own metrics aside.
    bodies = {}
    for server in (muster, python):
        bodies[server.name] = os.path.join(tmp, server.name + ".txt")
        curl_scrape(server.port, out=bodies[server.name], prometheus=False)
    check = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"),
                            bodies[python.name], bodies[muster.name]],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit("%s: muster exporter and Python disagree:\n%s%s" % (
            name, check.stdout, check.stderr))

    times = {muster.name: [], python.name: []}
    wire = {}
    for i in range(runs):
        order = (muster, python) if i % 2 == 0 else (python, muster)
        for server in order:
            secs, size = curl_scrape(server.port)
            times[server.name].append(secs)
            wire[server.name] = size
    for server in (muster, python):
        server.stop()
    m, p = times[muster.name], times[python.name]
    result = {
        "name": name,
        "files": files,
        "runs": runs,
        "muster_first_ms": first[muster.name] * 1e3,
        "python_first_ms": first[python.name] * 1e3,
        "muster_ms": statistics.median(m) * 1e3,
        "python_ms": statistics.median(p) * 1e3,
        "muster_runs_ms": [t * 1e3 for t in m],
        "python_runs_ms": [t * 1e3 for t in p],
        "muster_wire_bytes": wire[muster.name],
        "python_wire_bytes": wire[python.name],
        "check": check.stdout.strip(),
    }
    log("%s: median muster %.2f ms, Python %.1f ms (%.0fx)" % (
        name, result["muster_ms"], result["python_ms"], result["python_ms"] / result["muster_ms"]))
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--muster", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("dirs", nargs="+", help="NAME=DIR:RUNS")
    args = p.parse_args()
    atexit.register(kill_all)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    specs = []
    for spec in args.dirs:
        try:
            name, rest = spec.split("=", 1)
            path, runs = rest.rsplit(":", 1)
            specs.append((name, path, int(runs)))
        except ValueError:
            p.error("bad directory %r: expected NAME=DIR:RUNS" % spec)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    results = {"curl": curl.stdout.split("\n", 1)[0], "accept": PROM_ACCEPT, "dirs": []}
    try:
        with tempfile.TemporaryDirectory(prefix="muster-exporter-bench-") as tmp:
            for name, path, runs in specs:
                results["dirs"].append(bench_dir(args, name, path, runs, tmp))
    finally:
        kill_all()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
