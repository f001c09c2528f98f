"""Prometheus metrics of the prediction service, labelled by model (the registered name a workload serves, such as
``bike_overtime``) wherever a figure belongs to one; ``model=""`` on endpoints of no model.

Under gunicorn every worker is a process of its own, so the service runs
prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
the gunicorn config) and ``/metrics`` aggregates all live workers.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter("lambdaml_http_requests_total", "HTTP requests by endpoint, status and model",
                   ["endpoint", "status", "model"])
LATENCY = Histogram("lambdaml_http_request_duration_seconds", "Request latency by endpoint and model",
                    ["endpoint", "model"], buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("lambdaml_predictions_total", "Predictions made, by model", ["model"])
BATCH_TRIPS = Histogram("lambdaml_batch_trips", "Rows per forward pass, by model", ["model"], buckets=SIZE_BUCKETS)
BATCH_REQUESTS = Histogram("lambdaml_batch_requests", "Requests merged into one forward pass, by model", ["model"],
                           buckets=SIZE_BUCKETS)
MODEL_INFO = Gauge("lambdaml_model_info", "1 for the model version a worker serves", ["name", "version"],
                   multiprocess_mode="livemax")
MODEL_SWAPS = Counter("lambdaml_model_swaps_total", "Model versions swapped in, by model", ["model"])
MODEL_REFUSED = Counter("lambdaml_model_refused_total", "Model artifacts refused, by model and reason",
                        ["model", "reason"])
REJECTED = Counter("lambdaml_requests_rejected_total",
                   "Requests refused with 503 by admission control, by reason (in_flight, queue)", ["reason"])
IN_FLIGHT = Gauge("lambdaml_requests_in_flight", "Prediction requests being worked on, all workers",
                  multiprocess_mode="livesum")


def observe_batch(model: str, requests: int, rows: int) -> None:
    BATCH_REQUESTS.labels(model).observe(requests)
    BATCH_TRIPS.labels(model).observe(rows)
    PREDICTIONS.labels(model).inc(rows)


def exposition() -> tuple[bytes, str]:
    """The metrics text of every live worker (or of this process outside gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
