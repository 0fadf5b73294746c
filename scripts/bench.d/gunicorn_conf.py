"""gunicorn configuration of the HTTP throughput benchmark: prometheus-flask-exporter's
documented multiprocess set-up (a metrics HTTP server started by the master once it
is ready, and dead workers' live gauges marked on exit)."""

import os

from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics


def when_ready(server):
    GunicornPrometheusMetrics.start_http_server_when_ready(
        int(os.environ["BENCH_METRICS_PORT"]), host="127.0.0.1")


def child_exit(server, worker):
    GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
