"""HTTP throughput benchmark of scripts/bench: wrk on loopback against
`muster demo` with its HTTP metrics middleware on and off, and against gunicorn +
Flask + prometheus-flask-exporter (multiprocess mode), all in one run.

    python http_bench.py --muster target/release/muster --out RESULTS/http.json \
        [--workers 2] [--threads 2] [--connections 32] [--duration 5] [--warmup 3] \
        [--rounds 5] [--recycle-secs 10] [--max-requests 50]

Phase 1, throughput: the three servers are started side by side (each with
--workers workers, on its own 127.0.0.1 port), warmed up, then measured in
rounds; each round runs wrk once against each server, the order of muster ON and
OFF alternating between rounds, so noise on the shared machine hits all alike.
Reported: median requests/s per server, and the server processes' CPU time per
request (all processes of the server's session, from /proc), which is less
disturbed by wrk sharing the cores than requests/s is.

Phase 2, recycling: muster and gunicorn each alone with --max-requests N, wrk for
--recycle-secs seconds; the number of files in the multiprocess directory and the
time of a /metrics scrape before and after the load. Both serve /metrics outside
the app workers (muster --metrics-bind, gunicorn's master). gunicorn runs twice:
as configured in phase 1 (each new worker imports the app) and with --preload
(the app imported once by the master, workers only fork).

Every process started here is in its own session and is killed (SIGTERM, then
SIGKILL) on exit, on an error and on SIGINT/SIGTERM. Talks only to 127.0.0.1.
"""

import argparse
import atexit
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS = []


def log(msg):
    print("  %s" % msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in PROCS:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
        # The whole session: workers orphaned by a dead supervisor too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            pass
    PROCS.clear()


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


class Server:
    def __init__(self, name, argv, port, env=None, metrics_port=None, mpdir=None, logdir="."):
        self.name, self.port, self.mpdir = name, port, mpdir
        self.metrics_port = metrics_port or port
        self.log = open(os.path.join(logdir, "http_%s.log" % name), "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        PROCS.append(self.proc)

    def wait_ready(self, timeout=30, connect_only=False):
        """Until GET / and GET /metrics answer 200, or with connect_only until
        the port accepts a connection (no request: the first one is measured)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited early (status %s): see %s" % (
                    self.name, self.proc.returncode, self.log.name))
            try:
                if connect_only:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                if get(self.port, "/")[0] == 200 and get(self.metrics_port, "/metrics")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("%s not ready after %d s: see %s" % (self.name, timeout, self.log.name))

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)

    def cpu_seconds(self):
        """user + system time of every live process in the server's session, plus
        what the session leader has reaped of its children."""
        ticks = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is field 3 (state): session is field 6, utime 14, stime 15,
            # cutime 16, cstime 17.
            if int(fields[3]) != self.proc.pid:
                continue
            ticks += int(fields[11]) + int(fields[12])
            if int(pid) == self.proc.pid:
                ticks += int(fields[13]) + int(fields[14])
        return ticks / CLK_TCK

    def files(self):
        return len(os.listdir(self.mpdir))


def show(argv, mpdir, ports):
    """A command line for the report: relative paths, PORT and DIR for what changes."""
    out = []
    for x in argv:
        if x == mpdir:
            x = "DIR"
        elif x.startswith(os.getcwd() + "/"):
            x = os.path.relpath(x)
        for name, port in ports:
            x = x.replace("127.0.0.1:%d" % port, "127.0.0.1:" + name)
        out.append(x)
    return " ".join(out)


def get(port, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def scrape(port, runs=5):
    """Median wall time of GET /metrics (new connection each, body read), ms."""
    times, body = [], b""
    for _ in range(runs):
        t0 = time.perf_counter()
        st, body = get(port, "/metrics", timeout=30)
        times.append((time.perf_counter() - t0) * 1e3)
        if st != 200:
            raise SystemExit("GET /metrics on port %d: status %d" % (port, st))
    return {"ms": statistics.median(times), "runs_ms": times, "bytes": len(body),
            "lines": sum(1 for l in body.splitlines() if l and not l.startswith(b"#"))}


def wrk(args, port, duration):
    argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % duration,
            "--timeout", "5s", "http://127.0.0.1:%d/" % port]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    PROCS.append(p)
    stdout, stderr = p.communicate(timeout=duration + 30)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    PROCS.remove(p)
    if p.returncode != 0:
        raise SystemExit("wrk failed (%d): %s%s" % (p.returncode, stdout, stderr))
    w = parse_wrk(stdout)
    w["wrk_cpu_s"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return w


def wrk_side_by_side(ports, threads, connections, duration):
    """One wrk per port, all at the same time; their results in the same order."""
    procs = []
    for port in ports:
        argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration,
                "--timeout", "5s", "http://127.0.0.1:%d/" % port]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True))
        PROCS.append(procs[-1])
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=duration + 30)
        PROCS.remove(p)
        if p.returncode != 0:
            raise SystemExit("wrk failed (%d): %s%s" % (p.returncode, stdout, stderr))
        w = parse_wrk(stdout)
        w.pop("raw")
        out.append(w)
    return out


def parse_wrk(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", out)
    return {
        "rps": float(m.group(1)) if m else 0.0,
        "requests": int(n.group(1)) if n else 0,
        "socket_errors": [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0],
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "latency_avg": lat.group(1) if lat else "",
        "latency_max": lat.group(3) if lat else "",
        "raw": out,
    }


def counted_requests(port):
    """Sum of muster's http_requests_total for route "/" in a scrape."""
    _, body = get(port, "/metrics", timeout=30)
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("http_requests_total{") and 'route="/"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--muster", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--gunicorn", default=os.path.join(os.path.dirname(sys.executable), "gunicorn"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--side-rounds", type=int, default=6)
    p.add_argument("--recycle-secs", type=int, default=10)
    p.add_argument("--max-requests", type=int, default=50)
    p.add_argument("--no-recycle", action="store_true")
    a = p.parse_args()

    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    logdir = os.path.dirname(os.path.abspath(a.out))
    tmp = tempfile.mkdtemp(prefix="muster-bench-http-")
    atexit.register(shutil.rmtree, tmp, True)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    result = {
        "params": {k: getattr(a, k) for k in ("workers", "threads", "connections", "duration",
                                              "warmup", "rounds", "recycle_secs", "max_requests")},
        "wrk_version": wrk_version[0] if wrk_version else "",
        "gunicorn_version": subprocess.run([a.gunicorn, "--version"], capture_output=True,
                                           text=True).stdout.strip(),
        "loadavg_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
    }
    started = time.time()

    def muster(name, extra, metrics_bind=False):
        port = free_port()
        mp = os.path.join(tmp, name)
        argv = [a.muster, "demo", "-w", str(a.workers), "-b", "127.0.0.1:%d" % port,
                "--multiproc-dir", mp] + extra
        mport = None
        if metrics_bind:
            mport = free_port()
            argv += ["--metrics-bind", "127.0.0.1:%d" % mport]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("WEB_CONCURRENCY", None)
        s = Server(name, argv, port, env=env, metrics_port=mport, mpdir=mp, logdir=logdir)
        s.shown = show(argv, mp, [("PORT", port)] + ([("METRICS_PORT", mport)] if mport else []))
        return s

    def gunicorn(name, extra):
        port, mport = free_port(), free_port()
        mp = os.path.join(tmp, name)
        os.mkdir(mp)
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=mp, BENCH_METRICS_PORT=str(mport))
        env.pop("WEB_CONCURRENCY", None)
        argv = [a.gunicorn, "-w", str(a.workers), "-b", "127.0.0.1:%d" % port,
                "--no-control-socket", "-c", os.path.join(HERE, "gunicorn_conf.py"),
                "--chdir", HERE] + extra + ["flask_app:app"]
        s = Server(name, argv, port, env=env, metrics_port=mport, mpdir=mp, logdir=logdir)
        s.shown = "PROMETHEUS_MULTIPROC_DIR=DIR BENCH_METRICS_PORT=METRICS_PORT " + show(
            argv, mp, [("PORT", port)])
        return s

    # ---- phase 1: throughput, interleaved --------------------------------
    servers = {
        "muster_on": muster("muster_on", []),
        "muster_off": muster("muster_off", ["--no-http-metrics"]),
        "gunicorn": gunicorn("gunicorn", []),
    }
    # A second OFF server, for the A/A check of the side-by-side measurement.
    off_b = muster("muster_off_b", ["--no-http-metrics"])
    for s in list(servers.values()) + [off_b]:
        s.wait_ready()
    result["commands"] = {k: s.shown for k, s in servers.items()}
    log("warm-up: %d s each" % a.warmup)
    for s in servers.values():
        wrk(a, s.port, a.warmup)
    counted0 = counted_requests(servers["muster_on"].port)
    runs = {k: [] for k in servers}
    for r in range(a.rounds):
        order = ["muster_on", "muster_off"] if r % 2 == 0 else ["muster_off", "muster_on"]
        order.append("gunicorn")
        for k in order:
            s = servers[k]
            c0 = s.cpu_seconds()
            w = wrk(a, s.port, a.duration)
            w["server_cpu_s"] = s.cpu_seconds() - c0
            w.pop("raw")
            runs[k].append(w)
            log("round %d %-10s %9.0f req/s  %d requests  server CPU %.2f s (%.1f us/req), wrk CPU %.1f us/req%s" % (
                r + 1, k, w["rps"], w["requests"], w["server_cpu_s"],
                w["server_cpu_s"] * 1e6 / max(1, w["requests"]),
                w["wrk_cpu_s"] * 1e6 / max(1, w["requests"]),
                "  errors %s non-2xx %d" % (w["socket_errors"], w["non2xx"])
                if any(w["socket_errors"]) or w["non2xx"] else ""))
    counted1 = counted_requests(servers["muster_on"].port)
    # Side by side: ON and OFF loaded at the same time, each by a wrk with half the
    # threads and connections, so that whatever else runs on the machine hits both
    # at the same moment; then OFF against a second OFF (A/A: should be ~100%).
    half_t, half_c = max(1, a.threads // 2), max(1, a.connections // 2)
    side = {"threads": half_t, "connections": half_c, "on_off": [], "a_a": []}
    if a.side_rounds:
        log("side by side: muster ON and OFF at the same time, wrk -t%d -c%d each" % (half_t, half_c))
        on, off = servers["muster_on"], servers["muster_off"]
        for r in range(a.side_rounds):
            pair = [on, off] if r % 2 == 0 else [off, on]
            res = wrk_side_by_side([x.port for x in pair], half_t, half_c, a.duration)
            d = dict(zip([x.name for x in pair], res))
            side["on_off"].append({"on": d["muster_on"]["rps"], "off": d["muster_off"]["rps"],
                                   "errors": sum(sum(x["socket_errors"]) + x["non2xx"] for x in res)})
            log("side by side %d: ON %.0f req/s, OFF %.0f req/s, ON/OFF %.1f%%" % (
                r + 1, d["muster_on"]["rps"], d["muster_off"]["rps"],
                100 * d["muster_on"]["rps"] / max(1, d["muster_off"]["rps"])))
        for r in range(max(2, a.side_rounds // 3)):
            pair = [off, off_b] if r % 2 == 0 else [off_b, off]
            res = wrk_side_by_side([x.port for x in pair], half_t, half_c, a.duration)
            res = res if r % 2 == 0 else res[::-1]
            side["a_a"].append({"a": res[0]["rps"], "b": res[1]["rps"]})
            log("A/A %d: OFF %.0f req/s, OFF b %.0f req/s, ratio %.1f%%" % (
                r + 1, res[0]["rps"], res[1]["rps"], 100 * res[0]["rps"] / max(1, res[1]["rps"])))
        side["on_off_median"] = statistics.median(x["on"] / x["off"] for x in side["on_off"])
        side["a_a_median"] = statistics.median(x["a"] / x["b"] for x in side["a_a"])
        log("side by side: median ON/OFF %.1f%%, A/A %.1f%%" % (
            100 * side["on_off_median"], 100 * side["a_a_median"]))
    result["side_by_side"] = side

    sent = sum(w["requests"] for w in runs["muster_on"])
    counted = counted1 - counted0
    off_metrics = get(servers["muster_off"].port, "/metrics")[1].decode()
    result["check"] = {
        "muster_on_wrk_requests": sent,
        "muster_on_counted": counted,
        "muster_off_has_http_requests_total": "\nhttp_requests_total{" in off_metrics,
    }
    log("check: muster ON counted %d requests in http_requests_total{route=\"/\"}, wrk completed %d" % (
        counted, sent))
    for s in list(servers.values()) + [off_b]:
        s.stop()
    summary = {}
    for k, rs in runs.items():
        rps = [w["rps"] for w in rs]
        cpu_us = [w["server_cpu_s"] * 1e6 / max(1, w["requests"]) for w in rs]
        wrk_us = [w["wrk_cpu_s"] * 1e6 / max(1, w["requests"]) for w in rs]
        summary[k] = {
            "rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "cpu_us_per_req_median": statistics.median(cpu_us),
            "wrk_cpu_us_per_req_median": statistics.median(wrk_us),
            "errors": sum(sum(w["socket_errors"]) + w["non2xx"] for w in rs),
        }
    result["runs"] = runs
    result["summary"] = summary
    # Ratios per round too: ON/OFF measured back to back.
    result["on_off_per_round"] = [on["rps"] / off["rps"] for on, off in
                                  zip(runs["muster_on"], runs["muster_off"]) if off["rps"]]
    s = summary
    log("median: ON %.0f req/s, OFF %.0f req/s, ON/OFF %.1f%%; gunicorn %.0f req/s, muster ON / gunicorn %.1fx" % (
        s["muster_on"]["rps_median"], s["muster_off"]["rps_median"],
        100 * s["muster_on"]["rps_median"] / s["muster_off"]["rps_median"],
        s["gunicorn"]["rps_median"], s["muster_on"]["rps_median"] / s["gunicorn"]["rps_median"]))

    # ---- phase 2: recycling with --max-requests ---------------------------
    if not a.no_recycle:
        recycle = {}
        mr = ["--max-requests", str(a.max_requests)]
        for name, make in (("muster", lambda: muster("muster_recycle", mr, metrics_bind=True)),
                           ("gunicorn", lambda: gunicorn("gunicorn_recycle", mr)),
                           ("gunicorn_preload", lambda: gunicorn("gunicorn_preload_recycle", mr + ["--preload"]))):
            s = make()
            s.wait_ready()
            before = {"files": s.files(), "scrape": scrape(s.metrics_port)}
            w = wrk(a, s.port, a.recycle_secs)
            w.pop("raw")
            time.sleep(1)  # let the last recycled workers be replaced
            after = {"files": s.files(), "scrape": scrape(s.metrics_port)}
            recycle[name] = {"command": s.shown,
                             "before": before, "after": after, "wrk": w}
            log("recycle %-8s %7.0f req/s (%d requests, errors %s non-2xx %d): files %d -> %d, scrape %.2f -> %.2f ms (%d -> %d lines)" % (
                name, w["rps"], w["requests"], w["socket_errors"], w["non2xx"],
                before["files"], after["files"], before["scrape"]["ms"], after["scrape"]["ms"],
                before["scrape"]["lines"], after["scrape"]["lines"]))
            s.stop()
        result["recycle"] = recycle

    result["loadavg_end"] = os.getloadavg()[0]
    result["elapsed_s"] = round(time.time() - started)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
