"""A FastAPI app with prometheus_client counters and histograms, runnable under uvicorn.

    PROMETHEUS_MULTIPROC_DIR=DIR PYTHONPATH=python:tests/python/apps \
        uvicorn --fd 3 fastapi_app:app          # as a `muster run` worker
    PROMETHEUS_MULTIPROC_DIR=DIR uvicorn --app-dir tests/python/apps \
        --port 8000 fastapi_app:app             # plain uvicorn

Same metrics and routes as flask_app.py: `GET /`, `GET /items/{item}` (counted by an
HTTP middleware, labelled by route template), `GET /metrics` (prometheus_client's
MultiProcessCollector over the directory).
"""

import time

try:
    import muster_worker  # noqa: F401  (names metric files by slot under muster)
except ImportError:
    muster_worker = None

from fastapi import FastAPI, Request, Response
from app_metrics import IN_PROGRESS, LATENCY, REQUESTS, exposition

app = FastAPI()


@app.middleware("http")
async def count_requests(request: Request, call_next):
    if request.url.path == "/metrics":
        return await call_next(request)
    start = time.perf_counter()
    IN_PROGRESS.inc()
    try:
        response = await call_next(request)
    finally:
        IN_PROGRESS.dec()
    route = request.scope.get("route")
    template = route.path if route is not None else "unmatched"
    LATENCY.labels(template).observe(time.perf_counter() - start)
    REQUESTS.labels(request.method, template, str(response.status_code)).inc()
    return response


@app.get("/")
async def index():
    return {"service": "fastapi test app"}


@app.get("/items/{item}")
async def item(item: int):
    return {"item": item}


@app.get("/metrics")
def metrics():
    body, content_type = exposition()
    return Response(body, media_type=content_type)
