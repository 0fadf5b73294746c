"""Several `muster scrape` commands against each other on one directory, many
short runs interleaved, for changes too small for cold_scrape.py's rounds
(which put a Python scrape of a second or so between runs).

    python ab_scrape.py DIR 'CMD' ['CMD' ...] [--runs 150]

Each CMD is a command line that `scrape --dir DIR` is appended to: a muster
binary, or one with environment variables (`env FOO=1 target/release/muster`).
After one warm-up of each, every round runs each command once, in an order
shuffled from round to round, so that other load on a shared machine falls on
all alike. Prints the median, first quartile and mean wall time (spawn to
exit) of each.

Runs back to back get the memory the run before just freed: a change that
touches more fresh memory (huge pages especially) can look faster here and be
slower with other work in between, as in real use. Judge such changes with
cold_scrape.py and 61 rounds or more (docs/benchmarks-by-hand.md).
"""

import argparse
import random
import shlex
import statistics
import subprocess
import time


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("cmds", nargs="+", metavar="CMD")
    p.add_argument("--runs", type=int, default=150)
    a = p.parse_args()
    cmds = [shlex.split(c) + ["scrape", "--dir", a.dir] for c in a.cmds]
    for cmd in cmds:
        timed(cmd)
    walls = [[] for _ in cmds]
    for _ in range(a.runs):
        order = list(range(len(cmds)))
        random.shuffle(order)
        for i in order:
            walls[i].append(timed(cmds[i]))
    print("%s, %d rounds:" % (a.dir, a.runs))
    for name, w in zip(a.cmds, walls):
        w.sort()
        print(
            "  %-50s median %.2f ms  p25 %.2f ms  mean %.2f ms"
            % (name, 1e3 * statistics.median(w), 1e3 * w[len(w) // 4], 1e3 * statistics.mean(w))
        )


if __name__ == "__main__":
    main()
