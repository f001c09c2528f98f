"""Faults and bad input on the real stack. Every test counts what went in at the source and what came out at
the sinks, and fails if anything is missing or duplicated.

| fault or bad input | expected | reconciled |
|---|---|---|
| malformed, truncated, empty, oversized, wrongly typed events on `trips.requests` | each in `trips.dlq` with its rule; valid events keep flowing | broker-acknowledged = predicted + dead-lettered, by source offset |
| prediction service SIGKILLed (gunicorn master and workers, by pid), then restarted | the stream backs off and retries; nothing dropped | acknowledged = predicted + dead-lettered |
| Kafka broker stopped and restarted while traffic is produced | producers retry until acknowledged; the stream resumes | acknowledged = predicted + dead-lettered |
| a valid but terrible model promoted | `lambdaml models rollback` restores the previous version in every worker, no restart | worker pids unchanged; served version and predictions are the old ones |

MariaDB, S3, raw-file faults and reprocessing are in ``tests/e2e/test_faults.py``. The streaming job killed by
SIGKILL and restarted from its checkpoint, and a corrupt artifact refused with the old model still serving and a
rollback, are covered by ``test_speed_layer.py``.

The speed-layer tests run a prediction service and a streaming job of their own (private topics, port, model
name and runtime folder). The outage tests stop a service of the stack the suite runs on and start it again in
a ``finally`` block, so later tests find the stack as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from core import kafka
from core.events import TripRequest
from core.registry import Artifact, Registry
from core.settings import PROJECT_ROOT
from deploy.local.speed import SPEED_SERVICES, PredictionAPI, StreamJob, wait_for_model
from deploy.local.stack import Stack
from tests.model_factory import artifact_bytes

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (held together while chosen, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _lambdaml(settings, *args: str) -> subprocess.CompletedProcess:
    """The command line, as an operator runs it, in these settings."""
    lambdaml = Path(sys.executable).parent / "lambdaml"
    return subprocess.run([str(lambdaml), *args], env=settings.child_env(), cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------------- speed layer
class Ledger:
    """Every request the broker acknowledged, by (partition, offset), and what the stream made of it.

    ``reconcile`` reads ``trips.predictions`` and ``trips.dlq`` incrementally and accounts for every
    acknowledged request: a valid one by a prediction with its key, an invalid one by a dead letter with its
    source offset. Nothing may be missing, and nothing may end up on the wrong side.
    """

    def __init__(self, settings):
        self.settings = settings
        self.producer = kafka.producer(settings)
        self.acked: dict[tuple[int, int], tuple[str, bool]] = {}  # (partition, offset) -> (key, valid)
        self.failed: list[tuple[str, str]] = []
        self.predicted: dict[str, dict] = {}
        self.dead: dict[tuple[int, int], dict] = {}
        self._readers = {}
        for topic in (settings.kafka.trip_predictions_topic, settings.kafka.dead_letter_topic):
            consumer = kafka.consumer(settings, f"it-faults-ledger-{uuid.uuid4().hex[:8]}")
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
            self._readers[topic] = consumer

    def send(self, key: str, value: bytes | None, valid: bool) -> None:
        def delivered(err, msg) -> None:
            if err is None:
                self.acked[(msg.partition(), msg.offset())] = (key, valid)
            else:
                self.failed.append((key, str(err)))

        while True:
            try:
                self.producer.produce(self.settings.kafka.trip_requests_topic, key=key.encode(), value=value,
                                      on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.2)
        self.producer.poll(0)

    def send_requests(self, prefix: str, n: int) -> set[str]:
        for trip in trips(prefix, n):
            self.send(trip.trip_id, trip.model_dump_json().encode(), valid=True)
        return {f"{prefix}-{i:04d}" for i in range(n)}

    def flush(self, timeout: float = 60) -> None:
        assert self.producer.flush(timeout) == 0, "the broker did not acknowledge every request"

    def read(self) -> None:
        k = self.settings.kafka
        for topic, consumer in self._readers.items():
            while (msg := consumer.poll(0.2)) is not None:
                if msg.error():
                    continue
                value = json.loads(msg.value())
                if topic == k.trip_predictions_topic:
                    self.predicted[msg.key().decode()] = value
                else:
                    self.dead[(value["source_partition"], value["source_offset"])] = value

    def missing(self) -> list[str]:
        return [key for pos, (key, valid) in self.acked.items()
                if not (key in self.predicted if valid else pos in self.dead)]

    def reconcile(self, timeout: float = 180) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        self.read()
        while self.missing() and time.monotonic() < deadline:
            time.sleep(0.5)
            self.read()
        missing = self.missing()
        assert not missing, f"{len(missing)} acknowledged requests never came out, e.g. {missing[:5]}"
        valid_keys = {key for key, valid in self.acked.values() if valid}
        invalid_pos = {pos for pos, (_, valid) in self.acked.items() if not valid}
        assert set(self.predicted) == valid_keys, "a prediction for a request that was not valid or never sent"
        assert set(self.dead) == invalid_pos, "a dead letter for a valid request, or for one never sent"
        counts = {"acknowledged": len(self.acked), "predicted": len(valid_keys), "dead_lettered": len(invalid_pos)}
        assert counts["acknowledged"] == counts["predicted"] + counts["dead_lettered"]
        return counts

    def close(self) -> None:
        for consumer in self._readers.values():
            consumer.close()


def trips(prefix: str, n: int) -> list[TripRequest]:
    return [TripRequest(trip_id=f"{prefix}-{i:04d}", pickup_ts=dt.datetime(2026, 1, 5, 7) + dt.timedelta(minutes=i),
                        PULocationID=1 + i % 263, DOLocationID=1 + (i * 7) % 263, passenger_count=1 + i % 4,
                        trip_distance=0.5 + (i % 40) / 4)
            for i in range(n)]


class FaultSpeed:
    def __init__(self, settings, root_settings, model_name: str):
        self.settings = settings
        self.root = root_settings  # the stack's own settings: its pid files, its services
        self.model_name = model_name
        self.ledger = Ledger(settings)
        self.api = PredictionAPI(settings)
        self.job = StreamJob(settings)

    def stack(self, *only: str) -> Stack:
        return Stack(self.settings, list(only) or None, catalog=SPEED_SERVICES, with_dependencies=False,
                     echo=lambda _: None)

    def served(self) -> str:
        return requests.get(f"{self.settings.speed.url}/v1/models/current", timeout=5).json()["version"]

    def wait_served(self, version: str, timeout: float = 60, in_a_row: int = 12) -> bool:
        """True once ``in_a_row`` calls on fresh connections (any worker may answer) all serve ``version``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self.served() == version for _ in range(in_a_row)):
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return False

    def service_retries(self) -> int:
        """Calls to the prediction service the stream has retried so far, as its log reports them."""
        return self.job.proc.log_file.read_text(errors="replace").count("prediction service unavailable")

    def gunicorn_pids(self) -> set[int]:
        master = self.api.proc.pid()
        assert master is not None, "the prediction service is not running"
        return {master, *(c.pid for c in psutil.Process(master).children(recursive=True))}


@pytest.fixture(scope="module")
def fault_speed(stack, settings, tmp_path_factory):
    unique = uuid.uuid4().hex[:8]
    topics = {f: f"it.faults.{unique}.{getattr(settings.kafka, f)}" for f in (
        "trip_requests_topic", "trip_predictions_topic", "trip_completed_topic", "dead_letter_topic",
        "models_topic", "metrics_topic", "batch_events_topic")}
    model_name = f"it_faults_{unique}"
    port, app_port = _free_ports(2)
    speed = {"port": port, "app_port": app_port, "workers": 2, "threads": 4, "stream_retry_max_s": 180.0,
             "model_name": model_name, "lake_sink_path": settings.s3.uri("tests", "master", unique)}
    s = settings.model_copy(update={
        "runtime_dir": tmp_path_factory.mktemp("faults-runtime"),
        "kafka": settings.kafka.model_copy(update=topics),
        "speed": settings.speed.model_copy(update=speed),
    })
    # Children (gunicorn, the stream, the CLI) re-read the settings from the environment.
    s.kafka.model_fields_set.update(topics)
    s.speed.model_fields_set.update(speed)
    s.model_fields_set.update({"runtime_dir", "kafka", "speed"})
    kafka.ensure_topics(s)

    registry = Registry(s)
    good = registry.register(model_name, Artifact.from_bytes(artifact_bytes(31)), {"it": "good"}, [])
    # Valid, loadable, and terrible: it predicts about e^20 s (15 years) for every trip.
    bad = registry.register(model_name, Artifact.from_bytes(artifact_bytes(32, label_mean=20.0)), {"it": "bad"}, [])
    registry.promote(model_name, good.version)
    env = FaultSpeed(s, settings, model_name)
    env.good, env.bad = good.version, bad.version
    env.stack("speed-api", "speed-front", "speed-stream").up()
    assert wait_for_model(s, 60) == good.version
    yield env
    env.ledger.close()
    env.stack().down()
    from sqlalchemy import text

    from core.db import engine

    eng = engine(settings)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM model_versions WHERE name = :n"), {"n": model_name})
    eng.dispose()
    AdminClient(kafka.client_config(s)).delete_topics(list(topics.values()))


VALID = {"pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236, "passenger_count": 1,
         "trip_distance": 2.1, "VendorID": 2}


def _bad_events() -> dict[str, bytes | None]:
    whole = json.dumps(dict(VALID, trip_id="bad-truncated")).encode()
    return {
        "bad-not-json": b"{trip_id: bad-not-json, this is not JSON",
        "bad-truncated": whole[: len(whole) // 2],
        "bad-empty": b"",
        "bad-null-value": None,
        "bad-array": b"[1, 2, 3]",
        "bad-not-utf8": b"\xff\xfe\x00\x81garbage",
        "bad-oversized-id": json.dumps(dict(VALID, trip_id="x" * 600_000)).encode(),  # 600 kB, over the 64-char limit
        "bad-zone-type": json.dumps(dict(VALID, trip_id="bad-zone-type", PULocationID="Midtown")).encode(),
        "bad-distance-type": json.dumps(dict(VALID, trip_id="bad-distance-type", trip_distance="far")).encode(),
        "bad-id-type": json.dumps(dict(VALID, trip_id=12345)).encode(),
        "bad-ts-type": json.dumps(dict(VALID, trip_id="bad-ts-type", pickup_ts=1767600000)).encode(),
        "bad-fractional-zone": json.dumps(dict(VALID, trip_id="bad-fractional-zone", DOLocationID=12.5)).encode(),
        "bad-passengers": json.dumps(dict(VALID, trip_id="bad-passengers", passenger_count=42)).encode(),
    }


def test_bad_events_are_dead_lettered_with_reasons_and_valid_ones_keep_flowing(fault_speed):
    ledger = fault_speed.ledger
    before = fault_speed.ledger.send_requests("dlq-before", 40)
    bad = _bad_events()
    for key, value in bad.items():
        ledger.send(key, value, valid=False)
    after = ledger.send_requests("dlq-after", 40)
    ledger.flush()
    # An event over the broker's message size limit is refused at the producer, never acknowledged.
    with pytest.raises(KafkaException, match="MSG_SIZE_TOO_LARGE"):
        ledger.producer.produce(fault_speed.settings.kafka.trip_requests_topic, key=b"bad-too-big",
                                value=b"{" + b" " * 2_000_000 + b"}")
    assert ledger.failed == []

    counts = ledger.reconcile()
    print(f"bad events: {counts}")
    assert counts["dead_lettered"] == len(bad) and before | after <= set(ledger.predicted)
    reasons = {ledger.acked[pos][0]: v["error"] for pos, v in ledger.dead.items()}
    for key in ("bad-not-json", "bad-truncated", "bad-empty", "bad-null-value", "bad-array", "bad-not-utf8"):
        assert reasons[key].startswith("not_a_json_object: "), (key, reasons[key])
    for key, field in (("bad-oversized-id", "trip_id"), ("bad-id-type", "trip_id"), ("bad-ts-type", "pickup_ts"),
                       ("bad-zone-type", "PULocationID"), ("bad-distance-type", "trip_distance"),
                       ("bad-fractional-zone", "DOLocationID"), ("bad-passengers", "passenger_count")):
        assert reasons[key].startswith(field + ":"), (key, reasons[key])
    oversized = next(v for pos, v in ledger.dead.items() if ledger.acked[pos][0] == "bad-oversized-id")
    # The dead letter keeps a bounded head; length and sha256 name the whole payload, kept at its source offset.
    assert oversized["payload_truncated"] is True and oversized["payload_bytes"] == len(bad["bad-oversized-id"])
    assert oversized["payload_sha256"] == hashlib.sha256(bad["bad-oversized-id"]).hexdigest()
    assert len(oversized["payload"].encode()) <= fault_speed.settings.speed.dead_letter_payload_bytes


def test_prediction_service_sigkill_then_restart_drops_nothing(fault_speed):
    ledger = fault_speed.ledger
    ledger.send_requests("api-warm", 10)
    ledger.flush()
    ledger.reconcile()  # the stream is running and scoring
    stream_pid = fault_speed.job.proc.pid()
    pids = fault_speed.gunicorn_pids()
    assert len(pids) == 1 + fault_speed.settings.speed.workers
    retries_before = fault_speed.service_retries()
    try:
        for pid in pids:  # master and workers, each by its pid: no graceful shutdown
            os.kill(pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
        assert fault_speed.api.proc.pid() is None
        sent = ledger.send_requests("api-down", 60)
        ledger.flush()
        deadline = time.monotonic() + 120  # until the stream has met the outage and is backing off
        while fault_speed.service_retries() == retries_before and time.monotonic() < deadline:
            time.sleep(1)
        assert fault_speed.service_retries() > retries_before, "the stream never tried the killed service"
        assert fault_speed.job.proc.pid() == stream_pid, "the stream must wait for the service, not die"
        ledger.read()
        assert not sent & set(ledger.predicted)  # nothing scored while there was no service
    finally:
        fault_speed.stack("speed-api").up()
    assert wait_for_model(fault_speed.settings, 60) == fault_speed.good
    counts = ledger.reconcile()
    print(f"service SIGKILL: {counts}, stream retries {fault_speed.service_retries() - retries_before}")
    assert sent <= set(ledger.predicted), counts
    assert fault_speed.job.proc.pid() == stream_pid  # the same job, never restarted


def test_kafka_broker_restart_during_live_traffic_loses_nothing(fault_speed):
    ledger, root = fault_speed.ledger, fault_speed.root
    broker = Stack(root, ["kafka"], with_dependencies=False, echo=lambda _: None)
    sent: set[str] = set()
    produced = threading.Event()

    def produce() -> None:  # 20 requests a second for 15 s, straight through the outage
        for i, trip in enumerate(trips("kafka-restart", 300)):
            ledger.send(trip.trip_id, trip.model_dump_json().encode(), valid=True)
            sent.add(trip.trip_id)
            if i % 50 == 0:
                ledger.send(f"bad-during-restart-{i}", b"{oops", valid=False)
            time.sleep(0.05)
        produced.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(3)
        assert broker.down() == ["kafka"]
        time.sleep(3)
    finally:
        broker.up()
        producer.join()
    assert produced.is_set()
    ledger.flush(120)  # the producer retries what it could not deliver while the broker was away
    assert ledger.failed == []
    counts = ledger.reconcile(240)
    print(f"kafka restart: {counts}")
    assert sent <= set(ledger.predicted), counts
    assert fault_speed.job.proc.pid() is not None, "the stream must resume after the broker restart"


def test_bad_model_is_rolled_back_by_one_command_without_restarting_workers(fault_speed):
    s, url = fault_speed.settings, f"{fault_speed.settings.speed.url}/v1/predict"
    trip = dict(VALID, trip_id="rollback-probe")
    assert fault_speed.wait_served(fault_speed.good)
    good_prediction = requests.post(url, json=trip, timeout=5).json()
    pids = fault_speed.gunicorn_pids()

    promoted = _lambdaml(s, "models", "promote", fault_speed.bad, "--name", fault_speed.model_name)
    assert promoted.returncode == 0, promoted.stderr
    assert fault_speed.wait_served(fault_speed.bad)
    terrible = requests.post(url, json=trip, timeout=5).json()
    assert terrible["model_version"] == fault_speed.bad
    assert terrible["predicted_duration_s"] > 100 * good_prediction["predicted_duration_s"]

    rolled = _lambdaml(s, "models", "rollback", "--name", fault_speed.model_name)
    assert rolled.returncode == 0, rolled.stderr
    assert fault_speed.good in rolled.stdout
    assert fault_speed.wait_served(fault_speed.good, in_a_row=20)
    assert fault_speed.gunicorn_pids() == pids  # the same master and workers: swapped in place
    for _ in range(10):
        again = requests.post(url, json=trip, timeout=5).json()
        assert again == good_prediction
    assert Registry(s).production(fault_speed.model_name).version == fault_speed.good

    # The stream scores with it too.
    ledger = fault_speed.ledger
    sent = ledger.send_requests("after-rollback", 20)
    ledger.flush()
    ledger.reconcile()
    assert {ledger.predicted[k]["model_version"] for k in sent} == {fault_speed.good}
