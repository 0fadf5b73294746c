"""A Flask app with prometheus_client counters and histograms, runnable under gunicorn.

    PROMETHEUS_MULTIPROC_DIR=DIR PYTHONPATH=python:tests/python/apps \
        gunicorn --bind fd://3 -w 1 flask_app:app        # as a `muster run` worker
    PROMETHEUS_MULTIPROC_DIR=DIR gunicorn -b 127.0.0.1:8000 -w 2 \
        --chdir tests/python/apps flask_app:app          # plain gunicorn

`muster_worker` is imported first (when it is on the path), so under `muster run`
(MUSTER_WORKER_ID set) the files are named by slot. Routes: `GET /` and
`GET /items/<id>` (counted), `GET /metrics` (prometheus_client's
MultiProcessCollector over the directory, what such apps serve today).
"""

import time

try:
    import muster_worker  # noqa: F401  (names metric files by slot under muster)
except ImportError:
    muster_worker = None

from flask import Flask, Response, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "app_requests", "Requests answered by the app.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "app_request_duration_seconds",
    "Time to answer a request.",
    ["route"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.5),
)
IN_PROGRESS = Gauge(
    "app_requests_in_progress",
    "Requests being answered.",
    multiprocess_mode="livesum",
)

app = Flask(__name__)


def answered(route, body):
    start = time.perf_counter()
    with IN_PROGRESS.track_inprogress():
        response = jsonify(body)
    LATENCY.labels(route).observe(time.perf_counter() - start)
    REQUESTS.labels("GET", route, "200").inc()
    return response


@app.get("/")
def index():
    return answered("/", {"service": "flask test app"})


@app.get("/items/<int:item>")
def item(item):
    return answered("/items/<id>", {"item": item})


@app.get("/metrics")
def metrics():
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
