"""A prediction service of a test's own: gunicorn on a private port and runtime folder, its own
topics, a small model published to the lake and announced, all removed afterwards. The
developer's speed layer (``lambdaml speed up``) keeps running untouched beside it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil

from core import kafka, lake
from core.s3 import delete_prefix
from core.settings import Settings, SpeedSettings
from deploy.local.speed import PredictionAPI, service_processes, wait_for_model
from deploy.local.stack import Stack
from tests.model_factory import announcement, artifact_bytes

NAME = "trip_duration"
TRIP = {"pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236, "passenger_count": 1,
        "trip_distance": 2.1, "VendorID": 2}


def private_settings(settings: Settings, runtime_dir: Path, unique: str, **speed) -> Settings:
    """``settings`` with a private runtime folder, topics and these speed fields, all marked as set
    (gunicorn re-reads the settings from the environment)."""
    speed.setdefault("lake_sink_path", settings.s3.uri("tests", "master", unique))  # one writer per path
    validated = SpeedSettings.model_validate(settings.speed.model_dump() | speed)
    s = settings.model_copy(update={
        "runtime_dir": runtime_dir,
        "kafka": settings.kafka.prefixed(f"it.{unique}."),
        "speed": settings.speed.model_copy(update={k: getattr(validated, k) for k in speed}),
    })
    s.speed.model_fields_set.update(speed)
    s.model_fields_set.update({"runtime_dir", "kafka", "speed"})
    return s


@contextlib.contextmanager
def private_speed(settings: Settings, runtime_dir: Path, **speed) -> Iterator[Settings]:
    """Start the service with ``speed`` fields (``port`` among them) serving model ``v1`` of every workload (taxi's
    a ``trip_duration``, each other's under its model name); yield its settings.

    gunicorn listens on ``port`` itself unless ``front_proxy=True`` is among them: then the front (haproxy)
    does, as under ``lambdaml speed up``."""
    from confluent_kafka.admin import AdminClient

    unique = uuid.uuid4().hex[:8]
    speed.setdefault("front_proxy", False)
    s = private_settings(settings, runtime_dir, unique, **speed)
    kafka.ensure_topics(s)
    from speed.predictor import served_model_name, served_workloads

    producer = kafka.producer(s)
    for wl in served_workloads(s):
        name = served_model_name(s, wl)
        uri = s.s3.uri("tests", "speed", unique, wl.name, "v1", "model.pt")
        data = artifact_bytes(21, label_mean=6.5 if wl.task.kind == "regression" else -2.0, workload=wl.name)
        fs, path = lake.filesystem(s, uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
        producer.produce(s.kafka.models_topic, key=name.encode(),
                         value=kafka.encode(announcement(name, "v1", uri, data)))
    assert producer.flush(30) == 0
    stack = Stack(s, catalog=service_processes(s), with_dependencies=False)
    try:
        stack.up()
        assert wait_for_model(s, 90) == "v1", PredictionAPI(s).proc.log_tail()
        yield s
    finally:
        stack.down()
        AdminClient(kafka.client_config(s)).delete_topics(list(s.kafka.topics))
        delete_prefix(s, s.s3.uri("tests", "speed", unique))
        delete_prefix(s, s.master_events_uri)


def workers(s: Settings) -> list[psutil.Process]:
    """The gunicorn workers (children of the master) of the service."""
    master = PredictionAPI(s).proc.pid()
    assert master is not None, "the prediction service is not running"
    return psutil.Process(master).children()
