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
from app_metrics import IN_PROGRESS, LATENCY, REQUESTS, exposition

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
    body, content_type = exposition()
    return Response(body, mimetype=content_type)
