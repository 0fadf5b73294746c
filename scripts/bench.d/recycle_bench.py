"""Worker recycling benchmark: gunicorn + Flask + prometheus-flask-exporter
(tests/python/apps/flask_exporter_app.py, the documented GunicornPrometheusMetrics
set-up) with --max-requests, so every worker is replaced after a few requests, run
twice in one run: as gunicorn alone (every dead worker leaves its pid-named files
behind) and under `muster run` (the same gunicorn, one master with one worker per
muster worker; muster compacts the dead workers' files and serves /metrics).

    python recycle_bench.py --out RESULTS/recycle.json [--workers 2] \
        [--max-requests 1] [--checkpoints 10,100,1000] [--scrapes 5] [--preload] \
        [--muster target/release/muster] [--only gunicorn|muster]

Bounded load on 127.0.0.1 (one request at a time, at most 50 per recycle asked for)
until the number of recycled workers reaches each checkpoint; there, once the
directory has settled (the replacement workers booted, no file added or removed for
3 s), the number of files in the multiprocess directory, the samples served and the
time of `GET /metrics` (served by the gunicorn master, MultiProcessCollector over
the directory; median of --scrapes).
Recycles are counted from gunicorn's "Booting worker" log lines. With --preload the
app is imported once by the master and workers only fork, so 1,000 recycles take
seconds instead of minutes; the files left behind are the same. Requests/s is the
rate of the bounded load between two checkpoints (each request recycles a worker
with --max-requests 1, so it measures recycling, not serving). Under muster,
/metrics is muster's (--metrics-bind): the merged directory plus its own metrics.

Every process started here is in its own session and killed on exit.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APPS = os.path.join(ROOT, "tests", "python", "apps")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, body
    finally:
        conn.close()


def wait_until(what, limit, check):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("timed out waiting for %s" % what)


def boots(log_path):
    with open(log_path, errors="replace") as f:
        return sum(1 for line in f if "Booting worker with pid" in line)


def scrape(port, n):
    """Median time of `n` scrapes of /metrics (ms), after one not timed, and the
    samples of the last."""
    get(port, "/metrics")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status, body = get(port, "/metrics")
        times.append((time.perf_counter() - start) * 1000)
        if status != 200 or b"flask_http_request_total" not in body:
            raise SystemExit("bad /metrics answer: %s %r" % (status, body[:200]))
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return statistics.median(times), samples


def db_files(mpdir):
    return sum(1 for n in os.listdir(mpdir) if n.endswith(".db"))


def settle(mpdir, log_path, expected_boots):
    """Waits (at most 30 s) until the replacement workers have booted and the
    directory's file count held still for 3 s: no worker boot, recycle or
    compaction (every 2 s under muster) in flight while scrapes are timed."""
    wait_until("the last replacement workers", 30, lambda: boots(log_path) >= expected_boots)
    deadline = time.monotonic() + 30
    last, since = db_files(mpdir), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 3:
        time.sleep(0.1)
        now = db_files(mpdir)
        if now != last:
            last, since = now, time.monotonic()


def load_until(args, log_path, app_port, checkpoint):
    """Sends requests until `checkpoint` workers were recycled; returns requests/s."""
    sent = 0
    start = time.perf_counter()
    while boots(log_path) - args.workers < checkpoint:
        if sent >= 50 * checkpoint * args.max_requests:
            raise SystemExit("no recycling: %d requests, %d boots" % (sent, boots(log_path)))
        try:
            get(app_port, "/items/%d" % (sent % 7))
        except OSError:
            pass  # a connection to a worker that is just exiting
        sent += 1
    return sent / (time.perf_counter() - start)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def measure(name, args, mpdir, log_path, app_port, metrics_port):
    points = []
    for checkpoint in args.checkpoints:
        rate = load_until(args, log_path, app_port, checkpoint)
        settle(mpdir, log_path, boots(log_path))
        ms, samples = scrape(metrics_port, args.scrapes)
        point = {
            "recycles": boots(log_path) - args.workers,
            "files": db_files(mpdir),
            "samples": samples,
            "scrape_ms": round(ms, 2),
            "requests_per_s": round(rate, 1),
        }
        print("  %8s: %%(recycles)5d recycles, %%(files)5d files, %%(samples)5d samples, "
              "scrape %%(scrape_ms)8.2f ms, %%(requests_per_s)6.1f req/s" % name % point,
              file=sys.stderr, flush=True)
        points.append(point)
    return points


def start_and_measure(name, args, cmd, env, mpdir, log_path, app_port, metrics_port):
    """Starts `cmd` (its own session, output to `log_path`), waits until it serves
    the app and /metrics, measures every checkpoint and stops it."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(name, 120, lambda: get(app_port, "/")[0] == 200)
        wait_until(name + "'s /metrics", 60, lambda: get(metrics_port, "/metrics")[0] == 200)
        return measure(name, args, mpdir, log_path, app_port, metrics_port)
    finally:
        stop(proc)


def gunicorn_args(args):
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "gunicorn"),
        "-c", os.path.join(APPS, "gunicorn_conf.py"),
        "--chdir", APPS,
        "--max-requests", str(args.max_requests),
        "--no-control-socket",
    ]
    if args.preload:
        cmd.append("--preload")
    return cmd


def run_muster(args, workdir):
    """The same app under `muster run -w WORKERS`, each worker `gunicorn -w 1`."""
    mpdir = os.path.join(workdir, "mp-muster")
    app_port, metrics_port = free_port(), free_port()
    log_path = os.path.join(workdir, "muster.log")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), MUSTER_LOG="info")
    for name in ("MUSTER_WORKER_ID", "PROMETHEUS_MULTIPROC_DIR", "METRICS_PORT"):
        env.pop(name, None)
    cmd = [
        args.muster, "run",
        "-w", str(args.workers),
        "-b", "127.0.0.1:%d" % app_port,
        "--metrics-bind", "127.0.0.1:%d" % metrics_port,
        "--multiproc-dir", mpdir,
        "--",
    ] + gunicorn_args(args) + ["--bind", "fd://3", "-w", "1", "flask_exporter_app:app"]
    return start_and_measure("muster", args, cmd, env, mpdir, log_path, app_port, metrics_port)


def run_gunicorn(args, workdir):
    mpdir = os.path.join(workdir, "mp")
    os.mkdir(mpdir)
    app_port, metrics_port = free_port(), free_port()
    log_path = os.path.join(workdir, "gunicorn.log")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=mpdir, METRICS_PORT=str(metrics_port))
    env.pop("MUSTER_WORKER_ID", None)
    cmd = gunicorn_args(args) + [
        "-b", "127.0.0.1:%d" % app_port,
        "-w", str(args.workers),
        "flask_exporter_app:app",
    ]
    return start_and_measure("gunicorn", args, cmd, env, mpdir, log_path, app_port, metrics_port)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-requests", type=int, default=1)
    p.add_argument("--checkpoints", default="10,100,1000")
    p.add_argument("--scrapes", type=int, default=31)
    p.add_argument("--preload", action="store_true")
    p.add_argument("--only", choices=["gunicorn", "muster"],
                   help="run one side only (for investigation; ratios need both)")
    p.add_argument("--muster", default=os.path.join(ROOT, "target", "release", "muster"),
                   help="the muster binary (default: target/release/muster)")
    args = p.parse_args()
    args.checkpoints = [int(c) for c in args.checkpoints.split(",")]
    workdir = tempfile.mkdtemp(prefix="muster-recycle-")
    try:
        result = {
            "workers": args.workers,
            "max_requests": args.max_requests,
            "preload": args.preload,
        }
        for side, run in (("gunicorn", run_gunicorn), ("muster", run_muster)):
            if args.only in (None, side):
                result[side] = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
