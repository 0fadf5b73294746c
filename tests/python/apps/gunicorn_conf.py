"""gunicorn configuration for flask_exporter_app.py: prometheus-flask-exporter's
documented multiprocess set-up. The master serves /metrics on METRICS_PORT once it
is ready (when METRICS_PORT is set), and marks dead workers' live gauges on exit."""

import os

from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics


def when_ready(server):
    port = os.environ.get("METRICS_PORT")
    if port:
        GunicornPrometheusMetrics.start_http_server_when_ready(int(port), host="127.0.0.1")


def child_exit(server, worker):
    GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
