"""The Python side of the HTTP throughput benchmark (scripts/bench.d/http_bench.py):
a minimal Flask app whose `GET /` answers like `muster demo`'s, with
prometheus-flask-exporter's default HTTP metrics in multiprocess mode.

    PROMETHEUS_MULTIPROC_DIR=DIR BENCH_METRICS_PORT=PORT \
        gunicorn -w 2 -c scripts/bench.d/gunicorn_conf.py --chdir scripts/bench.d flask_app:app

GunicornPrometheusMetrics records, per request, `flask_http_request_duration_seconds`
(histogram) and `flask_http_request_total` (counter), labelled by method, status
and URL rule, into the multiprocess directory; /metrics is served by the gunicorn
master on BENCH_METRICS_PORT (gunicorn_conf.py), not by the app workers.
"""

from flask import Flask, jsonify
from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

app = Flask(__name__)
metrics = GunicornPrometheusMetrics(app)

BODY = {
    "routes": ["POST /walks", "POST /walks/{id}/complete", "GET /walks/{id}"],
    "service": "flask demo: dog walks",
}


@app.get("/")
def index():
    return jsonify(BODY)
