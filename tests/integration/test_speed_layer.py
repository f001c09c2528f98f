"""The speed layer on the real stack: gunicorn prediction service, hot swap from the models topic,
and the Spark streaming job from Kafka to Kafka, with its dead letters and restart recovery.

Everything runs under a private runtime folder, port and set of topics, so a developer's own
speed layer (``lambdaml speed up``) keeps running untouched.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable

import psutil
import pytest
import requests

from core import kafka, lake
from core.events import TripRequest
from deploy.local.speed import SPEED_SERVICES, LakeSinkJob, PredictionAPI, StreamJob, wait_for_model
from deploy.local.stack import Stack
from tests.model_factory import announcement, artifact_bytes

pytestmark = pytest.mark.integration
NAME = "trip_duration"


class SpeedEnv:
    def __init__(self, settings, unique: str):
        self.settings = settings
        self.unique = unique
        self.producer = kafka.producer(settings)

    def stack(self, *only: str) -> Stack:
        return Stack(self.settings, list(only) or None, catalog=SPEED_SERVICES, with_dependencies=False)

    def publish_model(self, version: str, data: bytes, announced: bytes | None = None, name: str = NAME) -> None:
        """Put ``data`` in the lake and announce it with the sha256 of ``announced`` (default: of ``data``)."""
        uri = self.settings.s3.uri("tests", "speed", self.unique, name, version, "model.pt")
        fs, path = lake.filesystem(self.settings, uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
        ann = announcement(name, version, uri, announced if announced is not None else data)
        self.producer.produce(self.settings.kafka.models_topic, key=name.encode(), value=kafka.encode(ann))
        assert self.producer.flush(30) == 0

    def produce_requests(self, payloads: dict[str, bytes]) -> None:
        for key, value in payloads.items():
            self.producer.produce(self.settings.kafka.trip_requests_topic, key=key.encode(), value=value)
        assert self.producer.flush(30) == 0

    def current_version(self, workload: str = "taxi") -> str | None:
        r = requests.get(f"{self.settings.speed.url}/v1/{workload}/models/current", timeout=5)
        return r.json()["version"] if r.status_code == 200 else None


@pytest.fixture(scope="module")
def speed(stack, settings, tmp_path_factory):
    import uuid

    unique = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={
        "runtime_dir": tmp_path_factory.mktemp("speed-runtime"),
        "kafka": settings.kafka.prefixed(f"it.{unique}."),
        "speed": settings.speed.model_copy(update={"port": 18100, "workers": 2, "threads": 8,
                                                    "stream_retry_max_s": 120.0, "lake_sink_trigger":
                                                    "processingTime:2 seconds", "lake_sink_path":
                                                    settings.s3.uri("tests", "master", unique)}),
    })
    # Children re-read the settings from the environment: mark every changed field as set.
    s.speed.model_fields_set.update({"port", "workers", "threads", "stream_retry_max_s", "lake_sink_trigger",
                                     "lake_sink_path"})
    s.model_fields_set.update({"runtime_dir", "kafka", "speed"})
    kafka.ensure_topics(s)
    env = SpeedEnv(s, unique)
    env.v1 = artifact_bytes(11)
    env.publish_model("v1", env.v1)
    env.stack("speed-api", "speed-front").up()
    assert wait_for_model(s, 60) == "v1"
    yield env
    env.stack().down()
    from confluent_kafka.admin import AdminClient

    AdminClient(kafka.client_config(s)).delete_topics(list(s.kafka.topics))
    from core.s3 import delete_prefix

    for uri in (s.master_events_uri, s.s3.uri("tests", "speed", unique)):
        delete_prefix(s, uri)


@contextlib.contextmanager
def under_load(request_of: Callable[[int, int], tuple[str, str, dict]], clients: int = 6):
    """Clients posting until the block ends; ``request_of(n, i)`` gives the (label, url, body) of client ``n``'s
    ``i``-th request. Yields (failures, answers): every failed request, and per label how many answers each model
    version gave."""
    failures: list[str] = []
    answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    stop = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            label, url, body = request_of(n, i)
            try:
                r = session.post(url, json=body, timeout=10)
                if r.status_code != 200:
                    failures.append(f"{label} {r.status_code} {r.text[:100]}")
                else:
                    answers[label][r.json()["model_version"]] += 1
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        yield failures, answers
    finally:
        stop.set()
        for t in threads:
            t.join()


TRIP = {"pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236, "passenger_count": 1,
        "trip_distance": 2.1, "VendorID": 2}


def test_hot_swap_under_load_fails_no_request_and_refuses_a_corrupt_artifact(speed):
    url = f"{speed.settings.speed.url}/v1/predict"

    def trips(n: int, i: int) -> tuple[str, str, dict]:
        return "taxi", url, {"trips": [dict(TRIP, trip_id=f"load-{n}-{i}-{j}") for j in range(3)]}

    with under_load(trips) as (failures, answers):
        time.sleep(1.0)
        speed.publish_model("v2", artifact_bytes(12))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(speed.current_version() == "v2" for _ in range(10)):
            time.sleep(0.5)
        time.sleep(1.0)
    seen = answers["taxi"]
    assert failures == []
    assert seen["v1"] > 0 and seen["v2"] > 0, seen

    # A corrupt artifact (bytes flipped after the sha256 was recorded) is refused; v2 keeps serving.
    good = artifact_bytes(13)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 3] ^= 0xFF
    speed.publish_model("v3", bytes(corrupt), announced=good)
    deadline = time.monotonic() + 30
    refused = 0.0
    while time.monotonic() < deadline and refused < speed.settings.speed.workers:
        text = requests.get(f"{speed.settings.speed.url}/metrics", timeout=5).text
        refused = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("lambdaml_model_refused_total{") and 'reason="sha256"' in line
                      and f'model="{NAME}"' in line)
        time.sleep(0.5)
    assert refused >= speed.settings.speed.workers  # every worker refused it
    assert all(speed.current_version() == "v2" for _ in range(6))
    assert requests.post(url, json=dict(TRIP, trip_id="after-corrupt"), timeout=5).json()["model_version"] == "v2"
    log = PredictionAPI(speed.settings).proc.log_file.read_text()
    assert "refused model v3 (sha256)" in log

    # Rollback is just another announcement of an earlier version.
    speed.publish_model("v1", speed.v1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(speed.current_version() == "v1" for _ in range(6)):
        time.sleep(0.5)
    assert all(speed.current_version() == "v1" for _ in range(6))


RIDE = {"started_at": "2024-06-05T17:42:10Z", "start_station_id": "6140.05", "rideable_type": "classic_bike",
        "member_casual": "casual"}


def test_two_models_served_at_once_and_one_swapped_under_load_fails_no_request_on_either(speed):
    """Every gunicorn worker holds both models; swapping the bike model leaves taxi's alone, with no failed request
    on either endpoint, and a corrupt bike artifact is refused while both keep serving."""
    bike = "bike_overtime"
    speed.publish_model("b1", artifact_bytes(21, label_mean=-2.0, workload="bike"), name=bike)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(speed.current_version("bike") == "b1" for _ in range(6)):
        time.sleep(0.5)
    taxi_version = speed.current_version("taxi")
    assert taxi_version is not None and all(speed.current_version("bike") == "b1" for _ in range(6))
    url = speed.settings.speed.url

    def both(n: int, i: int) -> tuple[str, str, dict]:
        ids = [f"two-{n}-{i}-{j}" for j in range(3)]
        if n % 2 == 0:
            return "taxi", f"{url}/v1/taxi/predict", {"trips": [dict(TRIP, trip_id=t) for t in ids]}
        return "bike", f"{url}/v1/bike/predict", {"rides": [dict(RIDE, ride_id=r) for r in ids]}

    with under_load(both) as (failures, seen):
        time.sleep(1.0)
        speed.publish_model("b2", artifact_bytes(22, label_mean=-2.0, workload="bike"), name=bike)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(speed.current_version("bike") == "b2" for _ in range(10)):
            time.sleep(0.5)
        good = artifact_bytes(23, workload="bike")
        corrupt = bytearray(good)
        corrupt[len(corrupt) // 3] ^= 0xFF
        speed.publish_model("b3", bytes(corrupt), announced=good, name=bike)
        time.sleep(3.0)
    assert failures == []
    assert set(seen["taxi"]) == {taxi_version}
    assert {"b1", "b2"} <= set(seen["bike"]) and "b3" not in seen["bike"], seen
    assert all(speed.current_version("bike") == "b2" for _ in range(6))
    ready = requests.get(f"{url}/readyz", timeout=5).json()
    assert ready["models"] == {"taxi": taxi_version, "bike": "b2"}


def _requests(prefix: str, n: int, start: dt.datetime = dt.datetime(2026, 1, 5, 7)) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        trip = TripRequest(trip_id=f"{prefix}-{i:04d}", pickup_ts=start + dt.timedelta(minutes=i),
                           PULocationID=1 + i % 263, DOLocationID=1 + (i * 7) % 263, passenger_count=1 + i % 4,
                           trip_distance=0.5 + (i % 40) / 4)
        out[trip.trip_id] = trip.model_dump_json().encode()
    return out


MALFORMED = {
    "bad-json": b"{not json",
    "bad-zone": json.dumps(dict(TRIP, trip_id="bad-zone", PULocationID=999)).encode(),
    "bad-distance": json.dumps(dict(TRIP, trip_id="bad-distance", trip_distance=-2)).encode(),
    "bad-missing": json.dumps({"trip_id": "bad-missing"}).encode(),
}


def _drain(settings, topic: str, until, timeout: float) -> list:
    consumer = kafka.consumer(settings, f"it-drain-{time.monotonic_ns()}")
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(got):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.key().decode() if msg.key() else None, json.loads(msg.value())))
    finally:
        consumer.close()
    return got


def _predicted_ids(got) -> set[str]:
    return {k for k, _ in got}


def test_stream_predicts_dead_letters_and_recovers_from_kill_and_outage(speed):
    s = speed.settings
    first = _requests("a", 120)
    speed.produce_requests({**first, **MALFORMED})
    speed.stack("speed-stream").up()

    got = _drain(s, s.kafka.trip_predictions_topic, lambda g: set(first) <= _predicted_ids(g), 180)
    assert set(first) <= _predicted_ids(got)
    # The job as `speed up` starts it warms its Python side up before its query starts.
    assert "warmed up in" in (s.log_dir / "speed-stream.log").read_text()
    for key, value in got:
        assert key == value["trip_id"] and value["model_version"] == speed.current_version()
        assert value["predicted_duration_s"] > 0
    dlq = _drain(s, s.kafka.dead_letter_topic, lambda g: len(g) >= len(MALFORMED), 60)
    reasons = {json.loads(v["payload"]).get("trip_id") if v["payload"].startswith("{\"") else "bad-json": v["error"]
               for _, v in dlq}
    assert reasons.keys() == MALFORMED.keys(), reasons
    assert reasons["bad-zone"].startswith("PULocationID") and reasons["bad-distance"].startswith("trip_distance")
    assert reasons["bad-missing"].startswith("pickup_ts") and reasons["bad-json"].startswith("not_a_json_object")
    assert all(v["source_topic"] == s.kafka.trip_requests_topic and v["source_offset"] >= 0 for _, v in dlq)

    # Kill the job hard, produce while it is down, restart: every request gets its prediction.
    job = StreamJob(s)
    os.killpg(job.proc.pid(), signal.SIGKILL)
    time.sleep(1.0)
    second = _requests("b", 150)
    speed.produce_requests(second)
    speed.stack("speed-stream").up()
    got = _drain(s, s.kafka.trip_predictions_topic, lambda g: set(first) | set(second) <= _predicted_ids(g), 180)
    assert set(first) | set(second) <= _predicted_ids(got)

    # The service goes away: the job retries and loses nothing once it is back.
    speed.stack("speed-api").down()
    third = _requests("c", 80)
    speed.produce_requests(third)
    time.sleep(4.0)
    assert job.proc.pid() is not None, "the stream must wait for the service, not die"
    speed.stack("speed-api").up()
    got = _drain(s, s.kafka.trip_predictions_topic, lambda g: set(third) <= _predicted_ids(g), 180)
    assert set(third) <= _predicted_ids(got)
    # The batch's progress (and so the status file) follows its output by a moment.
    deadline = time.monotonic() + 30
    while job.status().get("last", {}).get("service_retries", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.status()["last"]["service_retries"] > 0, job.status()


def test_the_same_stream_scores_bike_rides_and_dead_letters_each_workloads_own(speed):
    """One Spark query reads both request topics: rides are scored by the bike model onto the bike prediction
    topic, and a malformed ride and a malformed trip each go to their own workload's dead-letter topic."""
    s = speed.settings
    bike = s.kafka.for_workload("bike")
    if speed.current_version("bike") is None:
        speed.publish_model("b1", artifact_bytes(21, label_mean=-2.0, workload="bike"), name="bike_overtime")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and speed.current_version("bike") is None:
            time.sleep(0.5)
    speed.stack("speed-stream").up()
    rides = {f"ride-{i:03d}": json.dumps(dict(RIDE, ride_id=f"ride-{i:03d}", start_station_id=f"{5000 + i}.02",
                                              member_casual=("member", "casual")[i % 2])).encode()
             for i in range(40)}
    bad_rides = {"bad-ride-type": json.dumps(dict(RIDE, ride_id="bad-ride-type", rideable_type="tandem")).encode(),
                 "bad-ride-json": b'{"ride_id": '}
    for key, value in {**rides, **bad_rides}.items():
        speed.producer.produce(bike.requests, key=key.encode(), value=value)
    speed.produce_requests({"bad-trip-for-bike-test": json.dumps(dict(TRIP, trip_id="bad-trip-for-bike-test",
                                                                      PULocationID=0)).encode()})
    assert speed.producer.flush(30) == 0

    got = _drain(s, bike.predictions, lambda g: set(rides) <= _predicted_ids(g), 180)
    assert set(rides) <= _predicted_ids(got)
    version = speed.current_version("bike")
    for key, value in got:
        assert key == value["ride_id"] and value["model_version"] == version
        assert 0.0 < value["overtime_probability"] < 1.0 and value["member_casual"] in ("member", "casual")
    letters = _drain(s, bike.dlq, lambda g: len(g) >= len(bad_rides), 60)
    reasons = sorted(v["error"].split(":", 1)[0] for _, v in letters)
    assert reasons == ["not_a_json_object", "rideable_type"], letters
    assert all(v["source_topic"] == bike.requests for _, v in letters)
    taxi_letters = _drain(s, s.kafka.dead_letter_topic,
                          lambda g: any("bad-trip-for-bike-test" in (v.get("payload") or "") for _, v in g), 60)
    assert any("bad-trip-for-bike-test" in (v.get("payload") or "") and v["error"].startswith("PULocationID")
               for _, v in taxi_letters)
    assert not any("ride_id" in (v.get("payload") or "") for _, v in taxi_letters)


# Worst cases of one event each, all under Kafka's own 1 MB limit (the producer's is 1,000,000 bytes).
POISON = {
    "quotes": b'{"trip_id": "' + b'\\"' * 450_000,  # unterminated; JSON escaping doubles it
    "quotes_and_backslashes": b'"\\' * 450_000,
    "deep_nesting": b'{"a":' * 150_000 + b"1" + b"}" * 150_000,
    "invalid_utf8": b"\xff\xfe\xc3" * 300_000,
    "json_null": b"null",
    "tombstone": None,
    "huge_numbers": json.dumps(dict(TRIP, trip_id="huge", PULocationID=10 ** 400, trip_distance=1e308,
                                    passenger_count=-(10 ** 300))).encode(),
}


def test_no_single_event_stops_the_stream(speed):
    """Each poison event goes to the dead-letter topic with its reason, bounded in size, and the valid event
    produced right after it is scored within seconds; the query never restarts."""
    s = speed.settings
    speed.stack("speed-stream").up()
    job = StreamJob(s)
    restarts_before = job.status().get("restarts", 0)
    for name, payload in POISON.items():
        key = f"poison-{name}"
        speed.producer.produce(s.kafka.trip_requests_topic, key=key.encode(), value=payload)
        speed.produce_requests({f"after-{name}": TripRequest(trip_id=f"after-{name}", **TRIP).model_dump_json().encode()})
        got = _drain(s, s.kafka.trip_predictions_topic, lambda g, n=name: f"after-{n}" in _predicted_ids(g), 60)
        assert f"after-{name}" in _predicted_ids(got), (name, job.status())
    want = {None if p is None else hashlib.sha256(p).hexdigest(): name for name, p in POISON.items()}

    def letters_by_name(got) -> dict:
        return {want[v.get("payload_sha256")]: v for _, v in got if v.get("payload_sha256") in want}

    letters = letters_by_name(_drain(s, s.kafka.dead_letter_topic, lambda g: len(letters_by_name(g)) == len(want), 60))
    assert letters.keys() == POISON.keys()
    for name, letter in letters.items():
        assert letter["error"] and not letter["error"].startswith("record_too_large"), (name, letter["error"])
        assert len(json.dumps(letter).encode()) <= s.speed.stream_record_max_bytes, name
        assert letter["payload_bytes"] == (None if POISON[name] is None else len(POISON[name])), name
    assert letters["quotes"]["payload_truncated"] is True and letters["quotes"]["error"].startswith("not_a_json_object")
    assert letters["huge_numbers"]["error"].startswith("PULocationID")
    assert job.proc.pid() is not None and job.status().get("restarts", 0) == restarts_before, job.status()


def test_a_failing_query_is_restarted_with_backoff_and_reported(speed):
    """The service comes back with an API key the stream lacks (a misconfiguration): every batch now fails
    the same way. The job restarts its query with backoff and reports the failure, its offsets and repeats
    (status file, ``speed status``, platform health); once the service is fixed it scores everything."""
    from pydantic import SecretStr

    from serving.health import check_service

    s = speed.settings
    speed.stack("speed-stream").up()
    job = StreamJob(s)
    keyed = s.model_copy(update={"speed": s.speed.model_copy(update={"api_key": SecretStr("it-restart-key")})})
    keyed.speed.model_fields_set.add("api_key")
    keyed.model_fields_set.add("speed")
    speed.stack("speed-api").down()
    Stack(keyed, ["speed-api"], catalog=SPEED_SERVICES, with_dependencies=False).up()
    assert wait_for_model(keyed, 60) is not None
    blocked = _requests("r", 30)
    speed.produce_requests(blocked)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (job.status().get("last_failure") or {}).get("repeats", 0) < 2:
        time.sleep(1.0)
    status = job.status()
    failure = status.get("last_failure") or {}
    assert status.get("restarts", 0) >= 2 and failure.get("repeats", 0) >= 2, status
    assert "401" in failure["error"], failure
    assert job.proc.pid() is not None, "the job restarts its query; the process stays"

    def health_reports_it() -> bool:
        try:
            check_service("speed-stream", s)
            return False
        except RuntimeError as exc:
            return "restarting" in str(exc) and "401" in str(exc)

    deadline = time.monotonic() + 60  # between restarts the job waits in state "restarting"
    while time.monotonic() < deadline and not health_reports_it():
        time.sleep(0.5)
    assert health_reports_it(), job.status()
    # ... and so does the service's /metrics, for a scraper (open without the key).
    lines = requests.get(f"{keyed.speed.url}/metrics", timeout=5).text.splitlines()
    restarts = [float(ln.rsplit(" ", 1)[1]) for ln in lines
                if ln.startswith('lambdaml_stream_restarts{job="speed-stream"}')]
    assert restarts and restarts[0] >= 2, [ln for ln in lines if ln.startswith("lambdaml_stream")]
    states = [ln for ln in lines
              if ln.startswith('lambdaml_stream_state{job="speed-stream"') and ln.endswith(" 1.0")]
    assert len(states) == 1, states

    Stack(keyed, ["speed-api"], catalog=SPEED_SERVICES, with_dependencies=False).down()
    speed.stack("speed-api").up()
    got = _drain(s, s.kafka.trip_predictions_topic, lambda g: set(blocked) <= _predicted_ids(g), 180)
    assert set(blocked) <= _predicted_ids(got)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job.status().get("state") != "running":
        time.sleep(0.5)
    assert job.status()["state"] == "running" and job.status()["restarts"] >= 2


def test_the_lake_sink_keeps_every_event_exactly_once(speed, spark):
    """The master log: every record of the speed layer's topics in the lake, bytes unchanged, once each (the
    file sink's log, read by Spark), so a dead letter's whole payload outlives Kafka's retention."""
    from confluent_kafka import TopicPartition
    from pyspark.sql import functions as F

    s = speed.settings
    speed.stack("speed-stream", "speed-lake-sink").up()
    for name, payload in POISON.items():  # its own events too: the test does not lean on the ones before it
        speed.producer.produce(s.kafka.trip_requests_topic, key=f"poison-{name}".encode(), value=payload)
    speed.produce_requests(_requests("lake", 20))
    consumer = kafka.consumer(s, f"it-watermarks-{time.monotonic_ns()}")
    try:
        ends = {t: sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                       for p in range(s.kafka.partitions))
                for t in (s.kafka.trip_requests_topic, s.kafka.dead_letter_topic)}
    finally:
        consumer.close()

    def counts() -> dict[str, int]:
        try:
            rows = spark.read.parquet(s.master_events_uri).groupBy("topic").count().collect()
        except Exception:  # noqa: BLE001 - nothing written yet
            return {}
        return {r["topic"]: r["count"] for r in rows}

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(counts().get(t, 0) < n for t, n in ends.items()):
        time.sleep(2.0)
    log = spark.read.parquet(s.master_events_uri)
    assert all(counts().get(t, 0) >= n for t, n in ends.items()), (counts(), ends, LakeSinkJob(s).status())
    assert log.groupBy("topic", "partition", "offset").count().where("count > 1").count() == 0
    requests_log = log.where(F.col("topic") == s.kafka.trip_requests_topic)
    assert requests_log.count() == ends[s.kafka.trip_requests_topic]  # once each, none missing
    kept = {bytes(r["value"]) if r["value"] is not None else None
            for r in requests_log.where(F.col("key").cast("string").startswith("poison-")).collect()}
    assert {p for p in POISON.values()} <= kept  # the whole payloads, tombstone included
    lake = LakeSinkJob(s).status()
    assert lake.get("state") == "running" and lake.get("batches", 0) >= 1, lake
    assert "offsets_behind" in lake.get("last", {}), lake
    assert psutil.Process(LakeSinkJob(s).proc.pid()).nice() == s.speed.lake_sink_nice


def test_the_batch_views_are_recomputed_from_what_the_lake_sink_wrote(speed, spark):
    """The whole path of the master log: the stream's predictions, scored by a good version, then a bad one served
    for a while, then the good one again after a rollback, and the outcomes go through Kafka and the lake sink into
    the master log; the day's batch views wait until the sink holds what Kafka holds, then are recomputed from it:
    every prediction once under the version that made it, each with its outcome, a malformed request in no view."""
    from sqlalchemy import text

    from core.db import engine
    from core.events import TripCompleted
    from serving import archive
    from serving.reconcile import reconcile

    s = speed.settings
    speed.stack("speed-stream", "speed-lake-sink").up()
    # A day no other data has, in the past: an event arrives after its event time (the views read the arrivals
    # from the day before it on).
    day = dt.date(2002, 1, 1) + dt.timedelta(days=int(speed.unique[:6], 16) % 5000)
    good, bad = artifact_bytes(21), artifact_bytes(22)

    def served(version: str, data: bytes) -> None:
        speed.publish_model(version, data)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(speed.current_version() == version for _ in range(6)):
            time.sleep(0.5)
        assert speed.current_version() == version

    # A good version, then a bad one served for a while, then the rollback to the good one.
    trips: dict[str, bytes] = {}
    for phase, (version, data) in enumerate((("it-good", good), ("it-bad", bad), ("it-good", good))):
        served(version, data)
        batch = _requests(f"views-{speed.unique}-{phase}", (30, 10, 10)[phase],
                          dt.datetime.combine(day, dt.time(6 + 4 * phase)))
        speed.produce_requests({**batch, f"views-bad-{phase}": b"{not json"})
        _drain(s, s.kafka.trip_predictions_topic, lambda g, b=batch: set(b) <= _predicted_ids(g), 180)
        trips |= batch
    done = list(trips)[:20]
    for i, trip_id in enumerate(done):
        ended = TripCompleted(trip_id=trip_id, dropoff_ts=dt.datetime.combine(day, dt.time(23), dt.UTC),
                              duration_s=600.0 + i)
        speed.producer.produce(s.kafka.trip_completed_topic, key=trip_id.encode(),
                               value=ended.model_dump_json().encode())
    assert speed.producer.flush(30) == 0

    view, db = f"it_views_{speed.unique}", s.spark.hive_database
    eng = engine(s)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO batch_coverage (view_name, covered_until) VALUES (:v, :d)"),
                     {"v": view, "d": day})
    try:
        archived = archive.archive(spark, s, day, view=view, lake_root=s.s3.uri("tests", "speed", speed.unique))
        assert archived.rows["predictions"] == len(trips) and archived.covered_until == day + dt.timedelta(days=1)
        rows = spark.table(f"{db}.predictions").where(f"pickup_date = DATE'{day}'").collect()
        assert sorted(r.trip_id for r in rows) == sorted(trips)
        assert sorted(r.actual_duration_s for r in rows if r.actual_duration_s is not None) == [600.0 + i
                                                                                            for i in range(20)]
        hourly = spark.table(f"{db}.zone_hour_stats").where(f"pickup_date = DATE'{day}'").agg(
            {"trips": "sum", "completed": "sum"}).first()
        assert (hourly["sum(trips)"], hourly["sum(completed)"]) == (50, 20)
        # Each version's predictions stay under its name: the bad one's 10, the good one's 40 around it.
        versions = {r["model_version"]: r["trips"] for r in
                    spark.table(f"{db}.model_error").where(f"pickup_date = DATE'{day}'").collect()}
        assert versions == {"it-good": 40, "it-bad": 10}

        # Reconciliation: by event day, the master log and Hive agree and MySQL (no sync ran) lacks the day; by
        # arrival day (today), the master log holds every prediction and outcome Kafka holds.
        by_event = reconcile(spark, s, day, day)
        (row,) = by_event.views
        assert row.master == row.hive == archive.DayCounts(50, 20) and row.mysql == archive.DayCounts(0, 0)
        assert "MySQL differs" in row.verdict and by_event.differs
        today = dt.datetime.now(dt.UTC).date()
        arrived = {t.topic: t for t in reconcile(spark, s, today, today).topics}
        for topic in (s.kafka.trip_predictions_topic, s.kafka.trip_completed_topic):
            assert arrived[topic].master == arrived[topic].kafka > 0 and arrived[topic].verdict == "ok", arrived

        # Analysts read the master log as a Hive table through the Thrift Server: each record once.
        from core import hive
        from serving import master

        table = master.register(spark, s, f"master_events_{speed.unique}")
        quiet = [s.kafka.trip_requests_topic, s.kafka.trip_predictions_topic, s.kafka.trip_completed_topic]
        conn = hive.connect(s)
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT topic, COUNT(*) FROM {table} WHERE topic IN ({', '.join(['%s'] * len(quiet))}) "
                        "GROUP BY topic", quiet)
            through_hive = dict(cur.fetchall())
        finally:
            conn.close()
            spark.sql(f"DROP TABLE IF EXISTS {table}")  # the table only: its files are the master log
        log = master.events(spark, s, quiet).groupBy("topic").count().collect()
        assert through_hive == {r["topic"]: r["count"] for r in log}
    finally:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM archive_days WHERE view_name = :v"), {"v": view})
            conn.execute(text("DELETE FROM batch_coverage WHERE view_name = :v"), {"v": view})
        eng.dispose()
        for table in ("predictions", "zone_hour_stats", "model_error"):
            spark.sql(f"ALTER TABLE {db}.{table} DROP IF EXISTS PARTITION (pickup_date = '{day}')")


def test_the_lake_sink_killed_mid_batch_leaves_no_gap_and_no_duplicate(speed, spark):
    """The lake sink SIGKILLed (its process and JVM, by the pid it was started with) a moment after a burst of
    40,000 records reached its topic, when its next batch is writing them, then started again: the master log holds
    every offset of the topic once, none missing (what a killed batch wrote is not in the file sink's log, and the
    batch runs again from the checkpoint's offsets)."""
    from confluent_kafka import TopicPartition
    from pyspark.sql import functions as F

    s = speed.settings
    job = LakeSinkJob(s)
    speed.stack("speed-lake-sink").up()
    before = job.status().get("batches", 0)
    burst = _requests(f"kill-{speed.unique}", 40_000)
    for key, value in burst.items():
        speed.producer.produce(s.kafka.trip_requests_topic, key=key.encode(), value=value)
        speed.producer.poll(0)
    assert speed.producer.flush(60) == 0
    # The next trigger (every 2 s) takes the burst: kill while its batch writes.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job.status().get("batches", 0) == before:
        time.sleep(0.2)  # a batch before the burst's may still be finishing: wait for it to end
    time.sleep(2.5)
    pid = job.proc.pid()
    assert pid is not None
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    # One signal to the group the sink leads (it was started in a session of its own): killing the listed processes
    # one by one raced with short-lived children that ended between the listing and the signal.
    os.killpg(pid, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    assert job.proc.pid() is None

    speed.stack("speed-lake-sink").up()
    consumer = kafka.consumer(s, f"it-watermarks-{time.monotonic_ns()}")
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(s.kafka.trip_requests_topic, p), timeout=10)
                for p in range(s.kafka.partitions)}
    finally:
        consumer.close()

    def held() -> dict[int, tuple[int, int]]:
        rows = (spark.read.parquet(s.master_events_uri).where(F.col("topic") == s.kafka.trip_requests_topic)
                .groupBy("partition").agg(F.count(F.lit(1)).alias("rows"),
                                          F.countDistinct("offset").alias("offsets")).collect())
        return {r["partition"]: (r["rows"], r["offsets"]) for r in rows}

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(held().get(p, (0, 0))[1] < high - low
                                              for p, (low, high) in ends.items()):
        time.sleep(3.0)
    got = held()
    for p, (low, high) in ends.items():
        assert got.get(p) == (high - low, high - low), (p, got.get(p), (low, high), job.status())
