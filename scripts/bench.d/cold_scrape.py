"""A one-shot scrape of a directory, both sides in one run: the whole
`muster scrape` process against Python's MultiProcessCollector in process.

    python cold_scrape.py DIR MUSTER [--runs 7] [--out OUT.json] [--also OTHER_MUSTER ...]

- Python: a fresh CollectorRegistry + MultiProcessCollector(path=DIR) +
  generate_latest (text 0.0.4) per run, timed in this process (what a Python
  /metrics handler or a one-off script does; imports not counted).
- muster: `MUSTER scrape --dir DIR` (text 0.0.4, to /dev/null) as a child
  process, timed from spawn to exit: process start, cold merge (every key of
  every file parsed), encoding, exit. Its CPU time (user + system) comes from
  the children's rusage.

Runs alternate (Python, muster, Python, ...) after one warm-up of each, so
other load on a shared machine falls on both alike. Medians are printed and,
with --out, written as JSON with every run (of MUSTER).

--also adds other muster binaries (another commit's build) to every round,
in an order that alternates from round to round, for a comparison in one run.
MUSTER and each OTHER_MUSTER may carry leading arguments of their own
(shell words, e.g. "target/release/examples/read_floor --pread"); `scrape
--dir DIR` follows them.
"""

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import time

from py_scrape import scrape as python_scrape, timed_scrape


def muster_scrape(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("muster")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out")
    p.add_argument("--also", nargs="*", default=[], metavar="OTHER_MUSTER")
    a = p.parse_args()
    binaries = [a.muster] + a.also
    cmds = {b: shlex.split(b) + ["scrape", "--dir", a.dir] for b in binaries}
    body = python_scrape(a.dir)  # warm-up: page cache, allocator
    for cmd in cmds.values():
        muster_scrape(cmd)
    py_wall, py_cpu = [], []
    mu = {b: ([], []) for b in binaries}
    for round_ in range(a.runs):
        wall, cpu = timed_scrape(a.dir)
        py_wall.append(wall)
        py_cpu.append(cpu)
        for b in binaries if round_ % 2 == 0 else binaries[::-1]:
            wall, cpu = muster_scrape(cmds[b])
            mu[b][0].append(wall)
            mu[b][1].append(cpu)
    med = statistics.median
    mu_wall, mu_cpu = mu[a.muster]
    result = {
        "dir": a.dir,
        "lines": body.count(b"\n"),
        "runs": a.runs,
        "python_wall": py_wall,
        "python_cpu": py_cpu,
        "muster_wall": mu_wall,
        "muster_cpu": mu_cpu,
        "python_wall_median": med(py_wall),
        "python_cpu_median": med(py_cpu),
        "muster_wall_median": med(mu_wall),
        "muster_cpu_median": med(mu_cpu),
        "ratio_wall": med(py_wall) / med(mu_wall),
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f)
    print(
        "%s (%d lines), %d runs: Python %.1f ms (CPU %.1f ms)"
        % (a.dir, result["lines"], a.runs, med(py_wall) * 1e3, med(py_cpu) * 1e3)
    )
    for b in binaries:
        wall, cpu = mu[b]
        print(
            "  %s scrape process %.2f ms (CPU %.2f ms): %.1fx"
            % (b, med(wall) * 1e3, med(cpu) * 1e3, med(py_wall) / med(wall))
        )


if __name__ == "__main__":
    main()
