"""Server benchmark of issue #10, both comparisons in one run, with wrk on loopback:

1. `muster demo` with its HTTP metrics on and off (`--no-http-metrics`): the cost
   of the metrics middleware, as a ratio of requests/s;
2. an axum hello world under muster (`axum_hello -w N`, N forked workers, each on
   a current-thread runtime) against the same router under plain `axum::serve` on
   one multi-thread runtime of N threads: the same total cores;
3. the same with muster's HTTP metrics off (`--no-http-metrics`), to split what the
   metrics cost from what the rest of muster's stack costs.

    python server_bench.py --muster target/release/muster \
        --axum-hello target/release/examples/axum_hello --out RESULTS/server.json \
        [--workers 2] [--threads 2] [--connections 32] [--duration 4] [--rounds 6]

Each round runs wrk once against each server, the order of the pair alternating
between rounds, so noise on the shared machine hits both sides alike; reported are
the medians, the ratio of the medians and the median of the per-round ratios, and
the servers' CPU time per request (from /proc). Every process is killed on exit.
Talks only to 127.0.0.1. Helpers come from http_bench.py (same directory).
"""

import argparse
import atexit
import json
import os
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import Server, free_port, kill_all, log, on_signal, wrk  # noqa: E402


def measure(pair, args):
    """Rounds of wrk against the two servers of `pair`, alternating their order."""
    rows = {s.name: [] for s in pair}
    for r in range(args.rounds):
        order = pair if r % 2 == 0 else list(reversed(pair))
        for s in order:
            cpu0 = s.cpu_seconds()
            w = wrk(args, s.port, args.duration)
            cpu = s.cpu_seconds() - cpu0
            errors = sum(w["socket_errors"]) + w["non2xx"]
            rows[s.name].append({"rps": w["rps"], "requests": w["requests"],
                                 "cpu_us_per_request": cpu / max(w["requests"], 1) * 1e6,
                                 "errors": errors})
            log("round %d %-22s %10.0f req/s  %5.1f us/req  errors %d" % (
                r + 1, s.name, w["rps"], rows[s.name][-1]["cpu_us_per_request"], errors))
    a, b = pair[0].name, pair[1].name
    med = {n: statistics.median(x["rps"] for x in rows[n]) for n in rows}
    cpu = {n: statistics.median(x["cpu_us_per_request"] for x in rows[n]) for n in rows}
    per_round = [x["rps"] / y["rps"] for x, y in zip(rows[a], rows[b]) if y["rps"]]
    return {
        "servers": {n: {"rps_median": med[n], "rps_min": min(x["rps"] for x in rows[n]),
                        "rps_max": max(x["rps"] for x in rows[n]),
                        "cpu_us_per_request": cpu[n],
                        "errors": sum(x["errors"] for x in rows[n]), "rounds": rows[n]}
                    for n in rows},
        "ratio_of_medians": med[a] / med[b] if med[b] else 0.0,
        "median_round_ratio": statistics.median(per_round) if per_round else 0.0,
        "round_ratios": per_round,
        "cpu_ratio": cpu[a] / cpu[b] if cpu[b] else 0.0,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--muster", required=True)
    p.add_argument("--axum-hello", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tmp = tempfile.mkdtemp(prefix="muster-server-bench-")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    env["MUSTER_LOG"] = "warn"
    w = str(args.workers)
    started = time.time()
    load0 = os.getloadavg()[0]

    def muster_server(name, argv):
        port = free_port()
        mp = os.path.join(tmp, name)
        s = Server(name, argv + ["-w", w, "-b", "127.0.0.1:%d" % port, "--multiproc-dir", mp],
                   port, env=env, mpdir=mp, logdir=tmp)
        s.wait_ready()
        return s

    results = {"workers": args.workers, "wrk": {"threads": args.threads,
               "connections": args.connections, "duration_s": args.duration},
               "load_average_start": load0}
    # 1. The demo's metrics middleware on and off.
    on = muster_server("muster demo ON", [args.muster, "demo"])
    off = muster_server("muster demo OFF", [args.muster, "demo", "--no-http-metrics"])
    for s in (on, off):
        wrk(args, s.port, args.warmup)
    results["metrics_on_off"] = measure([on, off], args)
    on.stop()
    off.stop()
    # 2. axum hello world: muster vs plain axum::serve, same cores.
    under = muster_server("axum under muster", [args.axum_hello])
    port = free_port()
    plain = Server("axum::serve", [args.axum_hello, "plain", "127.0.0.1:%d" % port, w],
                   port, env=env, logdir=tmp)
    plain.wait_ready(connect_only=True)
    for s in (under, plain):
        wrk(args, s.port, args.warmup)
    results["axum_muster_vs_plain"] = measure([under, plain], args)
    under.stop()
    # 3. The same without muster's HTTP metrics: what the rest of the stack costs.
    bare = muster_server("axum under muster, no HTTP metrics", [args.axum_hello,
                                                                 "--no-http-metrics"])
    wrk(args, bare.port, args.warmup)
    results["axum_muster_no_metrics_vs_plain"] = measure([bare, plain], args)
    bare.stop()
    plain.stop()
    results["seconds"] = time.time() - started
    results["load_average_end"] = os.getloadavg()[0]
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    for key in ("metrics_on_off", "axum_muster_vs_plain", "axum_muster_no_metrics_vs_plain"):
        r = results[key]
        log("%s: ratio of medians %.1f%%, median of round ratios %.1f%%, CPU/request %.1f%%" % (
            key, 100 * r["ratio_of_medians"], 100 * r["median_round_ratio"],
            100 * r["cpu_ratio"]))


if __name__ == "__main__":
    main()
