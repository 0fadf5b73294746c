"""Python's multiprocess metrics server, as gunicorn set-ups run it.

    python py_exporter.py DIR PORT

A registry holding `MultiProcessCollector(registry, path=DIR)`, served by
`prometheus_client.start_http_server` on 127.0.0.1:PORT: what
prometheus_flask_exporter's `GunicornPrometheusMetrics.start_http_server`
runs in the gunicorn master, and the prometheus_client documentation's
multiprocess set-up. Every scrape re-reads every file in DIR. Runs until
killed.
"""

import signal
import sys

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    start_http_server(port, addr="127.0.0.1", registry=registry)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
