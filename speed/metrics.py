"""Prometheus metrics of the prediction service, labelled by model (the registered name a workload serves, such as
``bike_overtime``) wherever a figure belongs to one; ``model=""`` on endpoints of no model.

The streaming jobs on this machine (the scoring stream and the lake sink) are shown too, read from the
status files they write in ``<runtime>/speed/`` at each scrape: the state each last reported, its query
restarts and the age of its status (a job that stopped writing shows a growing age).

Under gunicorn every worker is a process of its own, so the service runs
prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
the gunicorn config) and ``/metrics`` aggregates all live workers.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

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


# The states a streaming job reports in its status file (``speed.stream.StatusFile``).
JOB_STATES = ("started", "running", "restarting", "failed", "stopped")


def job_families(statuses: dict[str, dict[str, Any]], now: dt.datetime) -> list[GaugeMetricFamily]:
    """The streaming jobs' metrics from their status files' contents, by job (pure)."""
    state = GaugeMetricFamily("lambdaml_stream_state", "1 for the state a streaming job last reported "
                              f"({', '.join(JOB_STATES)}), by job", labels=["job", "state"])
    restarts = GaugeMetricFamily("lambdaml_stream_restarts", "Query restarts since the job started, by job",
                                 labels=["job"])
    batches = GaugeMetricFamily("lambdaml_stream_batches", "Micro-batches since the query (re)started, by job",
                                labels=["job"])
    age = GaugeMetricFamily("lambdaml_stream_status_age_seconds", "Seconds since the job last wrote its status "
                            "(at start, after each batch with events, on a failure), by job", labels=["job"])
    for job, status in sorted(statuses.items()):
        for name in JOB_STATES:
            state.add_metric([job, name], 1.0 if status.get("state") == name else 0.0)
        restarts.add_metric([job], float(status.get("restarts", 0)))
        batches.add_metric([job], float(status.get("batches", 0)))
        try:
            written = dt.datetime.fromisoformat(status["ts"])
        except (KeyError, TypeError, ValueError):
            continue
        age.add_metric([job], max((now - written).total_seconds(), 0.0))
    return [state, restarts, batches, age]


def job_statuses(settings) -> dict[str, dict[str, Any]]:
    """Each streaming job's status file on this machine, by job (the names ``speed status`` shows), read as
    ``speed status`` and platform health read it; a job that never ran here is left out."""
    from deploy.local.speed import LakeSinkJob, StreamJob

    return {job.name: status for job in (StreamJob(settings), LakeSinkJob(settings))
            if isinstance(status := job.status(), dict) and status}


class _Jobs:
    """A collector of the streaming jobs' status files, read at each scrape."""

    def __init__(self, settings):
        self.settings = settings

    def collect(self):
        return job_families(job_statuses(self.settings), dt.datetime.now(dt.UTC))


def exposition(settings=None) -> tuple[bytes, str]:
    """The metrics text of every live worker (or of this process outside gunicorn), with the streaming jobs'
    state when ``settings`` are given."""
    jobs = CollectorRegistry()
    if settings is not None:
        jobs.register(_Jobs(settings))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(jobs), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY) + generate_latest(jobs), CONTENT_TYPE_LATEST
