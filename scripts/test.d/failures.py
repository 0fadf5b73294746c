"""Prints each failed or flaky test of a nextest JUnit report with the end of its output.

CI logs keep only their last lines; this puts the names of the tests that failed
(or failed first and passed on nextest's retry) and the reason there.
Usage: failures.py JUNIT_XML
"""

import sys
import xml.etree.ElementTree as ET

TAIL_LINES = 25


def main(path):
    root = ET.parse(path).getroot()
    found = []
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            for tag, verdict in (("failure", "FAILED"), ("error", "FAILED"),
                                 ("flakyFailure", "FLAKY"), ("flakyError", "FLAKY")):
                for problem in case.findall(tag):
                    found.append((verdict, suite.get("name"), case.get("name"),
                                  problem.get("message") or "", output_of(case, problem)))
    print(f"==> {len(found)} failed or flaky test run(s)")
    for verdict, binary, name, message, output in found:
        print(f"--- {verdict} {binary} {name}: {message}")
        for line in output[-TAIL_LINES:]:
            print(f"    {line}")
    for verdict, binary, name, _, _ in found:
        print(f"{verdict} {binary} {name}")


def output_of(case, problem):
    """The captured output of a failed run: the retry's own, else the test case's."""
    lines = []
    for tag in ("system-out", "system-err"):
        node = problem.find(tag)
        if node is None:
            node = case.find(tag)
        if node is not None and node.text:
            lines.extend(node.text.rstrip().splitlines())
    return lines


if __name__ == "__main__":
    main(sys.argv[1])
