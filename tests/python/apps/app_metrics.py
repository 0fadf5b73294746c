"""The metrics flask_app.py and fastapi_app.py record (prometheus_client, multiprocess
mode), and the exposition of Python's MultiProcessCollector they serve at /metrics.
Import muster_worker before this module (the apps do), so files are named by slot."""

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


def exposition():
    """(body, content type) of MultiProcessCollector over PROMETHEUS_MULTIPROC_DIR."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
