#!/usr/bin/env python3
"""Write a multiprocess directory with the real prometheus_client, from
several real processes (fork; each child has its own pid and files).

usage: write_dir.py DIR SCENARIO...

Scenarios (metric names differ, so several can share a directory):
  types      every type: counters, gauges in all ten modes, histograms with
             default and custom buckets, summaries; series shared by all
             processes and series of one process only
  hostile    label values with quotes, backslashes, newlines, tabs, é, 😀,
             empty values; help text with the same; no-label metrics
  hostile_labels  the same with plain help text
  realistic  a web app: 4 processes x 30 routes x methods x statuses
  negative   a histogram with negative bucket bounds (text format only)
  special    +Inf, -Inf, NaN, huge and tiny values, -0.0, zero increments
  names      metric and label names outside [a-zA-Z_:][a-zA-Z0-9_:]*, which
             prometheus_client 0.26 accepts (dots, non-ASCII, leading digits)
  pid_labels gauges of every kind of merge with a user label named `pid`
             (the process id replaces it, or the merge drops it), a counter too
  hammer     (with --seconds S) 2 processes update a counter, a histogram
             and new series for S seconds and print what they did as JSON lines

Values added up across processes are dyadic (exact in binary), so the
merged result does not depend on the order files are read in; values of one
process only may be anything.
"""

import json
import os
import sys
import time

if len(sys.argv) < 3:
    sys.exit(__doc__)

DIR = sys.argv[1]
# prometheus_client picks its value class at import time from this variable.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = DIR
os.makedirs(DIR, exist_ok=True)

import multiprocessing  # noqa: E402

from prometheus_client import Counter, Gauge, Histogram, Summary  # noqa: E402

MODES = ["all", "liveall", "min", "livemin", "max", "livemax",
         "sum", "livesum", "mostrecent", "livemostrecent"]

HOSTILE_VALUES = [
    'quote"d',
    "back\\slash",
    "new\nline",
    "tab\there",
    "caf\u00e9",
    "grin \U0001F600",
    "",
    'all of it: "\\\n\u00e9\U0001F600" {},=',
    "\\n is not a newline",
    "trailing backslash\\",
]
EXOTIC_BOUNDS = [1e-7, 2.5e-5, 0.30000000000000004, 1234567.0, 123456789.0,
                 1e16, 1e21]
HOSTILE_HELP = 'Help with a \\ backslash,\na newline, "quotes", caf\u00e9 and \U0001F600.'


def scenario_types(i, n):
    shared = 2.0 ** -(i % 3)  # dyadic
    c = Counter("py_events", "Events seen.", registry=None)
    c.inc(i + 1)
    fam = Counter("py_requests_total", "Requests by method and code.",
                  ["method", "code"], registry=None)
    fam.labels("GET", "200").inc(2)
    fam.labels(method="POST", code=str(500 + i)).inc(0.1 * (i + 1))  # own series
    fam.labels("PUT", "201")  # created, never incremented: value 0
    for mode in MODES:
        g = Gauge(f"py_gauge_{mode}", f"A gauge in {mode} mode.", registry=None,
                  multiprocess_mode=mode)
        lg = Gauge(f"py_gauge_{mode}_labelled", f"A labelled gauge in {mode} mode.",
                   ["shard"], registry=None, multiprocess_mode=mode)
        if "mostrecent" in mode:
            g.set(10 * i + 0.5)
            lg.labels("shared").set(-i - 0.25)
            lg.labels(f"own{i}").set(0.1 * i)
            # Set twice: only the last value of a process counts.
            g.set(10 * i + 1.5)
        else:
            g.set(shared * 3)
            g.inc(i)
            g.dec(0.5)
            lg.labels("shared").set(i - 1.5)
            lg.labels(f"own{i}").set(1 / 3 + i)
            lg.labels("untouched")  # created at 0
    h = Histogram("py_latency_seconds", "Latency with default buckets.",
                  ["route"], registry=None)
    for v in (0.0, 0.0078125, 0.25, 2.5, 7.5, 10.0, 12.0, shared):
        h.labels("/shared").observe(v)
    for v in (0.005, 0.01, 0.1, 0.3 + i, 1e-9, 1000.0):
        h.labels(f"/own/{i}").observe(v)
    hc = Histogram("py_size_bytes", "Sizes with custom buckets.",
                   buckets=[1, 10, 100, 1e3, 1e6, 1e10, float("inf")], registry=None)
    for v in (0, 1, 5, 999, 1e6, 4e9, 1e11, 2 ** i):
        hc.observe(v)
    # Bounds whose `le` text differs between Python's repr and Go's format.
    he = Histogram("py_exotic_bounds", "Bounds with odd float formats.",
                   buckets=EXOTIC_BOUNDS, registry=None)
    for v in EXOTIC_BOUNDS + [0, 3e21]:
        he.observe(v)
    s = Summary("py_payload_bytes", "Payload sizes.", registry=None)
    s.observe(512 * (i + 1))
    s.observe(0.5)
    sl = Summary("py_payload_labelled", "Payload sizes by kind.", ["kind"], registry=None)
    sl.labels("shared").observe(4)
    sl.labels(f"own{i}").observe(0.3 * (i + 1))


def scenario_negative(i, n):
    # Text format only: OpenMetrics forbids _sum on a histogram with negative
    # bucket bounds, and Python's own exposition writes one anyway.
    hn = Histogram("py_delta", "Custom buckets with negative bounds.", ["sign"],
                   buckets=[-1234567.0, -2.5, -1, -1e-7, 0, 0.5, 1], registry=None)
    for v in (-3, -1, -0.5, 0, 0.25, 1, 2):  # a negative _sum
        hn.labels("mixed").observe(v)
    hn.labels("empty")  # a histogram that saw nothing


def scenario_hostile(i, n, help_text=HOSTILE_HELP):
    c = Counter("py_hostile", help_text, ["value", "index"], registry=None)
    for k, v in enumerate(HOSTILE_VALUES):
        c.labels(v, str(k)).inc(k + 1)
    plain = Counter("py_hostile_plain", "No labels at all.", registry=None)
    plain.inc()
    empty = Counter("py_hostile_empty_value", "Only empty label values.",
                    ["a", "b"], registry=None)
    empty.labels("", "").inc(2)
    g = Gauge("py_hostile_gauge", help_text, ["value"], registry=None,
              multiprocess_mode="all")
    g.labels(HOSTILE_VALUES[i % len(HOSTILE_VALUES)]).set(i + 0.5)
    gs = Gauge("py_hostile_gauge_sum", "Sum gauge.", ["value"], registry=None,
               multiprocess_mode="livesum")
    for v in HOSTILE_VALUES:
        gs.labels(v).inc(0.25)
    h = Histogram("py_hostile_seconds", help_text, ["value"], registry=None,
                  buckets=[0.5, 1])
    for v in HOSTILE_VALUES:
        h.labels(v).observe(0.75)
    s = Summary("py_hostile_summary", help_text, ["value"], registry=None)
    for v in HOSTILE_VALUES:
        s.labels(v).observe(2)


ROUTES = [f"/api/v1/resource{r}/{{id}}" for r in range(30)]


def scenario_hostile_labels(i, n):
    scenario_hostile(i, n, help_text="Plain help.")


def scenario_realistic(i, n):
    requests = Counter("http_requests", "Total HTTP requests.",
                       ["method", "route", "status"], registry=None)
    duration = Histogram("http_request_duration_seconds", "HTTP request duration.",
                         ["method", "route", "status"], registry=None)
    in_progress = Gauge("http_requests_in_progress", "Requests being served.",
                        ["method", "route"], registry=None, multiprocess_mode="livesum")
    start = Gauge("process_start_time_seconds", "Start time of the worker.",
                  registry=None, multiprocess_mode="all")
    start.set(1_700_000_000 + i)
    last = Gauge("app_last_deploy_timestamp_seconds", "When the app was deployed.",
                 registry=None, multiprocess_mode="max")
    last.set(1_690_000_000 + 7 * i)
    body = Summary("http_response_size_bytes", "Response sizes.", ["route"], registry=None)
    k = 0
    for r, route in enumerate(ROUTES):
        for method in ("GET", "POST"):
            for status in ("200", "404", "500"):
                if (r + i + len(status)) % 3 == 0 and status != "200":
                    continue
                k += 1
                times = 1 + (k * 7 + i) % 5
                requests.labels(method, route, status).inc(times)
                for t in range(times):
                    duration.labels(method, route, status).observe(((k + t) % 37) / 1024 * 64)
                body.labels(route).observe(256 * (k % 4))
            in_progress.labels(method, route).set((r + i) % 3)


def scenario_special(i, n):
    g = Gauge("py_special", "Special values.", ["what"], registry=None,
              multiprocess_mode="all")
    for name, v in (("inf", float("inf")), ("minus_inf", float("-inf")),
                    ("nan", float("nan")), ("huge", 1.7976931348623157e308),
                    ("tiny", 5e-324), ("minus_zero", -0.0), ("third", 1 / 3),
                    ("big_int", 2.0 ** 53 + 2), ("negative", -123.456)):
        g.labels(name).set(v)
    mx = Gauge("py_special_max", "Max with infinities.", registry=None,
               multiprocess_mode="max")
    mx.set(float("inf") if i == 0 else i)
    mn = Gauge("py_special_min", "Min with infinities.", registry=None,
               multiprocess_mode="min")
    mn.set(float("-inf") if i == 1 else -i)
    c = Counter("py_special_counter", "Counter with odd increments.", ["kind"], registry=None)
    c.labels("zero").inc(0)
    c.labels(f"tiny{i}").inc(1e-9)
    c.labels(f"huge{i}").inc(1e300)
    c.labels("big").inc(2.0 ** 52)


def scenario_hammer(i, n, seconds):
    c = Counter("py_hammer", "Hammered.", registry=None)
    h = Histogram("py_hammer_seconds", "Hammered histogram.", buckets=[1, 2, 4, 8],
                  registry=None)
    # New series keep appearing, so the file is resized while scrapes read it.
    series = Counter("py_hammer_series", "One series per label value.", ["n", "pad"],
                     registry=None)
    pad = "p" * 96
    deadline = time.monotonic() + seconds
    count = total = created = 0
    while time.monotonic() < deadline:
        for _ in range(16):
            c.inc()
            v = count % 11
            h.observe(v)
            total += v
            count += 1
        if created < 3000:
            series.labels(str(created), pad).inc()
            created += 1
    line = json.dumps({"pid": os.getpid(), "py_hammer_total": count,
                       "py_hammer_seconds_count": count, "py_hammer_seconds_sum": total,
                       "py_hammer_series": created}) + "\n"
    # One write(2) of less than PIPE_BUF bytes: the processes share the pipe,
    # and print() may write the line and its newline separately, interleaving
    # them with another process's line.
    os.write(1, line.encode())


def scenario_names(i, n):
    c = Counter("http.requests", "Requests, with a dotted name.", ["my.label", "method"],
                registry=None)
    c.labels("x", "GET").inc(i + 1)
    c.labels(f"own{i}", "POST").inc(0.5)
    Counter("a:b", "A legacy name with a colon.", ["l"], registry=None).labels("1").inc()
    Counter("caf\u00e9.visits", "Non-ASCII names.", ["\u00fcn\u00ef", "0digit"],
            registry=None).labels("v", "w").inc(2)
    Counter("1st.metric", "A name starting with a digit.", registry=None).inc()
    Gauge("temp.\u00b0C", "A gauge with a symbol.", ["sensor.id"], registry=None,
          multiprocess_mode="max").labels("s1").set(20 + i)
    Gauge("pod.info", "A per-process gauge with a dotted label.", ["pod.name"],
          registry=None, multiprocess_mode="all").labels(f"pod-{i}").set(1)
    h = Histogram("req.latency.seconds", "A dotted histogram.", ["route.name"],
                  buckets=[0.5, 1], registry=None)
    h.labels("/a").observe(0.25)
    h.labels("/a").observe(0.75 + i)
    Summary("payload.size", "A dotted summary.", ["kind-of"], registry=None).labels(
        "\U0001F600").observe(4)


def scenario_pid_labels(i, n):
    g = Gauge("g_pid_all", "All, with a pid label.", ["pid", "shard"], registry=None,
              multiprocess_mode="all")
    g.labels("user", "a").set(i)
    # Two series that differ only in `pid`: the process id replaces both.
    g.labels("x", "z").set(1)
    g.labels("y", "z").set(2 + i)
    Gauge("g_pid_liveall", "Liveall, with a pid label.", ["pid"], registry=None,
          multiprocess_mode="liveall").labels("user").set(i + 0.5)
    s = Gauge("g_pid_sum", "Sum, with a pid label.", ["pid"], registry=None,
              multiprocess_mode="sum")
    s.labels("a").set(1)
    s.labels("b").set(2)
    Gauge("g_pid_max", "Max, with a pid label.", ["pid", "k"], registry=None,
          multiprocess_mode="max").labels(str(i), "k").set(i)
    Gauge("g_pid_livemin", "Livemin, with a pid label.", ["pid"], registry=None,
          multiprocess_mode="livemin").labels(str(i)).set(-i)
    Gauge("g_pid_mostrecent", "Mostrecent, with a pid label.", ["pid"], registry=None,
          multiprocess_mode="mostrecent").labels(str(i)).set(i)
    Counter("c_pid", "A counter keeps its pid label.", ["pid"], registry=None).labels(
        "user").inc()


SCENARIOS = {
    "types": (3, scenario_types),
    "hostile": (3, scenario_hostile),
    "hostile_labels": (3, scenario_hostile_labels),
    "realistic": (4, scenario_realistic),
    "special": (2, scenario_special),
    "negative": (2, scenario_negative),
    "names": (3, scenario_names),
    "pid_labels": (3, scenario_pid_labels),
}


def run_child(fn, i, n, *extra):
    try:
        fn(i, n, *extra)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(1)


def main():
    args = sys.argv[2:]
    seconds = None
    if "--seconds" in args:
        k = args.index("--seconds")
        seconds = float(args[k + 1])
        del args[k:k + 2]
    ctx = multiprocessing.get_context("fork")
    procs = []
    for name in args:
        if name == "hammer":
            if seconds is None:
                sys.exit("hammer needs --seconds S")
            count, fn, extra = 2, scenario_hammer, (seconds,)
        elif name in SCENARIOS:
            (count, fn), extra = SCENARIOS[name], ()
        else:
            sys.exit(f"unknown scenario {name!r}\n\n{__doc__}")
        # All processes of all scenarios run at once: distinct live pids.
        for i in range(count):
            p = ctx.Process(target=run_child, args=(fn, i, count, *extra))
            p.start()
            procs.append((name, p))
    failed = []
    for name, p in procs:
        p.join()
        if p.exitcode != 0:
            failed.append(f"{name} (pid {p.pid}) exited with {p.exitcode}")
    if failed:
        sys.exit("writer processes failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
