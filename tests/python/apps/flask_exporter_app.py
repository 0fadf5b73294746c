"""The same kind of Flask app instrumented the documented prometheus-flask-exporter way
(`GunicornPrometheusMetrics`): the benchmark's reference for plain gunicorn.

    PROMETHEUS_MULTIPROC_DIR=DIR METRICS_PORT=PORT \
        gunicorn -c tests/python/apps/gunicorn_conf.py --chdir tests/python/apps \
        -w 2 --max-requests 50 flask_exporter_app:app

GunicornPrometheusMetrics records `flask_http_request_duration_seconds` (histogram)
and `flask_http_request_total` (counter) per request; `/metrics` is served by the
gunicorn master on METRICS_PORT (gunicorn_conf.py), not by the app workers.
"""

try:
    import muster_worker  # noqa: F401  (names metric files by slot under muster)
except ImportError:
    muster_worker = None

from flask import Flask, jsonify
from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

app = Flask(__name__)
metrics = GunicornPrometheusMetrics(app)


@app.get("/")
def index():
    return jsonify({"service": "flask exporter test app"})


@app.get("/items/<int:item>")
def item(item):
    return jsonify({"item": item})
