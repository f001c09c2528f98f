"""The streaming job's pure transforms: reading events by the request contract (the same verdicts as the API),
the records it writes (predictions, bounded dead letters), its progress metrics and restarts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from core.events import Prediction, TripRequest
from core.settings import Settings
from speed import stream
from speed.predictor import request_columns
from tests.contract_corpus import CORPUS, GOOD, trip
from workloads.taxi import features

def source_batch(payloads: list[bytes | None], topics: list[str] | None = None) -> pa.RecordBatch:
    ts = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    return pa.RecordBatch.from_arrays(
        [pa.array(topics or ["trips.requests"] * len(payloads)), pa.array([0] * len(payloads), pa.int32()),
         pa.array(range(len(payloads)), pa.int64()),
         pa.array([ts + dt.timedelta(seconds=i) for i in range(len(payloads))], pa.timestamp("us", tz="UTC")),
         pa.array(payloads, pa.binary())],
        names=list(stream.SOURCE_COLUMNS))


class FixedService:
    """Stands in for the HTTP client in ``score_batch``: a pure function of the features, no I/O."""

    settings = None

    def __init__(self, fail_first: int = 0):
        self.retries = 0
        self.calls: list[list[str]] = []
        self.fail_first = fail_first

    def score(self, ids, columns, workload="taxi"):
        self.retries += self.fail_first
        self.fail_first = 0
        self.calls.append(ids)
        if workload == "bike":
            return {"model_version": "b:1", "predictions": [{"ride_id": i, "overtime_probability": 0.5 + h / 100}
                                                            for i, h in zip(ids, columns["hour"])]}
        return {"model_version": "m:1",
                "predictions": [{"trip_id": t, "predicted_duration_s": 100.0 + d}
                                for t, d in zip(ids, columns["log_distance"])]}


def scored(payloads: list[bytes | None], settings: Settings | None = None, chunk: int = 500,
           service: FixedService | None = None) -> list[dict]:
    settings = settings or Settings(speed={"stream_http_batch": chunk})
    return stream.score_batch(service or FixedService(), source_batch(payloads), settings).to_pylist()


# ------------------------------------------------------------------------------------- one contract, one verdict
def api_verdict(payload: bytes | None) -> str | None:
    from speed.app import ApiError, parse_trips

    try:
        parse_trips(b"" if payload is None else payload, 1000)
        return None
    except ApiError as exc:
        assert exc.status == 400, exc.message
        return exc.field


def test_the_api_and_the_stream_give_every_payload_the_same_verdict():
    out = scored([p for p, _ in CORPUS])
    for (payload, field), record in zip(CORPUS, out):
        shown = (payload or b"")[:80]
        stream_field = None
        if record["dead"]:
            error = json.loads(record["value"])["error"]
            stream_field = "body" if error.startswith("not_a_json_object") else error.split(":", 1)[0]
        assert stream_field == field, (shown, json.loads(record["value"]).get("error"))
        assert api_verdict(payload) == field, shown


# ------------------------------------------------------------------------------------------------- the records
def test_score_batch_scores_valid_rows_only_in_chunks():
    payloads = [trip(trip_id=f"ok-{i}") for i in range(3)] + [b"{bad", trip(PULocationID=0)]
    service = FixedService(fail_first=2)
    out = scored(payloads, chunk=2, service=service)
    assert service.calls == [["ok-0", "ok-1"], ["ok-2"]]
    assert [r["dead"] for r in out] == [False, False, False, True, True]
    assert [r["service_retries"] for r in out] == [2, 2, 0, None, None]
    assert all(r["model_version"] == "m:1" and r["latency_ms"] > 0 for r in out[:3])
    assert all(r["model_version"] is None and r["latency_ms"] is None for r in out[3:])


def test_predictions_follow_the_contract():
    out = scored([trip(trip_id="ok-2", passenger_count=None, pickup_ts="2026-01-10T23:59:00+05:00")])
    assert out[0]["topic"] == "trips.predictions" and out[0]["key"] == "ok-2"
    p = Prediction.model_validate_json(out[0]["value"])
    assert p.trip_id == "ok-2" and p.PULocationID == 161 and p.passenger_count is None
    assert p.model_version == "m:1" and p.predicted_duration_s > 100.0
    assert p.pickup_ts == dt.datetime(2026, 1, 10, 18, 59, tzinfo=dt.UTC)
    assert p.event_ts == dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    value = json.loads(out[0]["value"])
    assert "passenger_count" in value  # nulls are written, not dropped
    assert value["pickup_ts"] == "2026-01-10T18:59:00.000000Z"


def test_predictions_use_the_in_process_features():
    payloads = [trip(trip_id=f"f-{i}", PULocationID=1 + i * 37, trip_distance=0.5 + i) for i in range(5)]
    out = scored(payloads)
    trips = [TripRequest.model_validate_json(p) for p in payloads]
    expected = features.compute_numpy(request_columns(trips))["log_distance"]
    np.testing.assert_allclose([json.loads(r["value"])["predicted_duration_s"] - 100.0 for r in out], expected)


def test_dead_letters_carry_payload_reason_and_source():
    out = scored([trip(), b"not json at all", trip(trip_id="b-pu", PULocationID=999)])
    assert out[1]["topic"] == "trips.dlq" and out[1]["key"] == "trips.requests/0/1"
    letter = json.loads(out[1]["value"])
    assert letter["error"].startswith("not_a_json_object") and letter["payload"] == "not json at all"
    assert letter["source_topic"] == "trips.requests" and letter["source_offset"] == 1 and letter["ts"]
    assert json.loads(out[2]["value"])["error"].startswith("PULocationID: ")


# ----------------------------------------------------------------------------------- no input makes a record too large
POISON = {
    "quotes": b'{"trip_id": "' + b'\\"' * 300_000,  # unterminated; JSON escaping doubles it
    "quotes_and_backslashes": b'"\\' * 500_000,
    "control_characters": b'"' + bytes(range(1, 32)) * 30_000,  # each escapes to 6 bytes
    "deep_nesting": b"[" * 500_000 + b"]" * 500_000,
    "invalid_utf8": b'{"trip_id": "' + b"\xff\xfe\xc3" * 300_000 + b'"}',
    "huge_numbers": trip(trip_id="huge", PULocationID=10 ** 400, trip_distance=1e308, passenger_count=-(10 ** 300)),
    "json_null": b"null",
    "tombstone": None,
}


def test_every_record_is_bounded_whatever_the_input():
    settings = Settings()
    out = scored([*POISON.values(), trip()], settings)
    assert [r["key"] for r in out if r["topic"] == "trips.predictions"] == [GOOD["trip_id"]]
    for (name, payload), row in zip(POISON.items(), out):
        assert row["topic"] == "trips.dlq" and row["key"] == f"trips.requests/0/{list(POISON).index(name)}", name
        assert len(row["value"]) <= settings.speed.stream_record_max_bytes, name
        letter = json.loads(row["value"])
        assert letter["error"] and not letter["error"].startswith(stream.RECORD_TOO_LARGE), (name, letter["error"])
        if payload is None:
            assert letter["payload"] is None and letter["payload_bytes"] is None
            continue
        assert letter["payload_bytes"] == len(payload), name
        assert letter["payload_sha256"] == hashlib.sha256(payload).hexdigest(), name
        head = payload[:settings.speed.dead_letter_payload_bytes]
        assert letter["payload"] == head.decode(errors="replace"), name
        assert letter["payload_truncated"] == (len(payload) > settings.speed.dead_letter_payload_bytes), name


def test_a_record_over_the_limit_becomes_a_small_dead_letter():
    settings = Settings(speed={"dead_letter_payload_bytes": 200_000, "stream_record_max_bytes": 8192})
    out = scored([*POISON.values(), trip()], settings)
    quotes = json.loads(out[0]["value"])
    assert quotes["error"].startswith(stream.RECORD_TOO_LARGE) and "trips.dlq" in quotes["error"]
    assert quotes["payload"] is None and quotes["payload_bytes"] == len(POISON["quotes"])
    assert all(len(r["value"]) <= 8192 for r in out)
    assert [r["key"] for r in out if r["topic"] == "trips.predictions"] == [GOOD["trip_id"]]
    assert out[-1]["dead"] is False


def test_batch_summary_and_metrics_from_progress():
    progress = {"batchId": 7, "batchDuration": 412, "durationMs": {"addBatch": 300},
                "observedMetrics": {"batch": {"events": 12, "rows": 10, "dead_letters": 2, "latency_ms_p50": 180.26,
                                              "latency_ms_max": 300.0, "service_retries": 1,
                                              "model_versions": ["m:2", "m:1"]}}}
    summary = stream.batch_summary(progress)
    assert summary["rows"] == 10 and summary["dead_letters"] == 2 and summary["seconds"] == 0.412
    assert summary["latency_ms_p50"] == 180.3 and summary["model_versions"] == ["m:1", "m:2"]
    names = {m.name: m.value for m in stream.metric_events(summary)}
    assert names == {"stream.rows": 10, "stream.dead_letters": 2, "stream.seconds": 0.412,
                     "stream.latency_ms_p50": 180.3}
    assert all(m.tags == {"batch_id": "7"} for m in stream.metric_events(summary))
    empty = {"batchId": 8, "observedMetrics": {"batch": {"events": 0}}}
    assert stream.batch_summary(empty) is None and stream.batch_summary({"batchId": 9}) is None


@pytest.mark.parametrize(("spec", "kwargs"), [
    ("processingTime:500 milliseconds", {"processingTime": "500 milliseconds"}),
    ("availableNow", {"availableNow": True}),
    ("realTime:5 seconds", {"realTime": "5 seconds"}),
])
def test_trigger_spec(spec, kwargs):
    assert stream.trigger_kwargs(spec) == kwargs


def test_bad_trigger_spec_says_what_to_use():
    with pytest.raises(ValueError, match="LAMBDAML_SPEED__STREAM_TRIGGER"):
        stream.trigger_kwargs("every now and then")


def test_restarts_back_off_and_name_a_batch_that_fails_on_every_replay():
    r = stream.Restarts(backoff_s=2.0, max_restarts=0, max_backoff_s=10.0)
    first = r.failed("RecordTooLargeException: 1200317 bytes\n\tat ...", {"trips.requests": {"0": 41}}, 7)
    assert first == first | {"repeats": 1, "batch_id": 7, "error": "RecordTooLargeException: 1200317 bytes"}
    assert r.next_wait() == 2.0
    again = r.failed("RecordTooLargeException: 1200317 bytes", None, None)  # replay failed before any batch
    assert again["repeats"] == 2 and again["after_offsets"] == {"trips.requests": {"0": 41}} and again["batch_id"] == 7
    assert r.next_wait() == 4.0
    r.failed("RecordTooLargeException: 1200317 bytes", None, None)
    assert r.next_wait() == 8.0
    r.failed("RecordTooLargeException: 1200317 bytes", None, None)
    assert r.next_wait() == 10.0 and r.restarts == 4
    r.succeeded()
    other = r.failed("ServiceUnavailable", {"trips.requests": {"0": 90}}, 12)
    assert other["repeats"] == 1 and r.next_wait() == 2.0
    capped = stream.Restarts(backoff_s=1.0, max_restarts=1)
    capped.failed("x", None, None)
    assert capped.next_wait() == 1.0 and capped.next_wait() is None


# ------------------------------------------------------------------------------------------ one stream, many workloads
def test_one_batch_of_two_workloads_goes_each_to_its_own_topics():
    """Events of both request topics in one batch: each is read by its workload's request model, scored by its
    model, and written to its workload's prediction topic, or, malformed, to its own dead-letter topic."""
    from core.workload import load

    bike = load("bike")
    ride = dict(bike.example)
    payloads = [trip(trip_id="t-ok"), json.dumps(dict(ride, ride_id="r-ok")).encode(),
                json.dumps(dict(ride, ride_id="r-bad", rideable_type="tandem")).encode(), b"{nope",
                trip(trip_id="t-bad", PULocationID=0), json.dumps(dict(ride, ride_id="r-2")).encode(),
                trip(trip_id="r-as-trip")]
    topics = ["trips.requests", "bike.requests", "bike.requests", "bike.requests", "trips.requests",
              "bike.requests", "bike.requests"]
    service = FixedService()
    out = stream.score_batch(service, source_batch(payloads, topics), Settings()).to_pylist()
    assert [(r["topic"], r["key"]) for r in out] == [
        ("trips.predictions", "t-ok"), ("bike.predictions", "r-ok"), ("bike.dlq", "bike.requests/0/2"),
        ("bike.dlq", "bike.requests/0/3"), ("trips.dlq", "trips.requests/0/4"), ("bike.predictions", "r-2"),
        ("bike.dlq", "bike.requests/0/6")]
    assert [r["dead"] for r in out] == [False, False, True, True, True, False, True]
    assert json.loads(out[2]["value"])["error"].startswith("rideable_type: ")
    assert json.loads(out[3]["value"])["error"].startswith("not_a_json_object")
    assert json.loads(out[6]["value"])["error"].startswith("ride_id: ")  # a trip on the bike topic is refused
    ride_out = json.loads(out[1]["value"])
    assert ride_out["ride_id"] == "r-ok" and ride_out["model_version"] == "b:1"
    assert 0.5 <= ride_out["overtime_probability"] < 0.75
    assert ride_out["start_station_id"] == "6140.05" and ride_out["member_casual"] == "casual"
    assert sorted(map(sorted, service.calls)) == [["r-2", "r-ok"], ["t-ok"]]


def test_a_workloads_topics_derive_from_its_name_unless_set():
    assert Settings().kafka.for_workload("bike") == ("bike.requests", "bike.predictions", "bike.completed", "bike.dlq")
    s = Settings(kafka={"workload_topics": {"bike": {"dlq": "citibike.dead"}}})
    assert s.kafka.for_workload("bike").dlq == "citibike.dead" and s.kafka.for_workload("bike").requests == \
        "bike.requests"
    assert s.kafka.for_workload("taxi") == ("trips.requests", "trips.predictions", "trips.completed", "trips.dlq")
    assert {"bike.requests", "citibike.dead"} <= set(s.kafka.topics)
    with pytest.raises(ValueError, match="unknown roles"):
        Settings(kafka={"workload_topics": {"bike": {"request": "x"}}}).kafka.for_workload("bike")
    assert set(stream.routes(Settings())) == {"trips.requests", "bike.requests"}
    private = Settings().kafka.prefixed("it.x.")
    assert all(t.startswith("it.x.") for t in private.topics) and len(private.topics) == len(Settings().kafka.topics)
    assert private.for_workload("bike").dlq == "it.x.bike.dlq" and "workload_topics" in private.model_fields_set


def test_warm_up_runs_the_python_side_once_and_calls_no_service(local_spark):
    """The job's workers start and read one unreadable event a task from every request topic before the query
    does: with no prediction service anywhere (the settings' URL answers nothing), it still completes."""
    from core.settings import get_settings

    settings = get_settings()
    # Nothing listens on port 9, and an unreachable service is not retried: a call would fail the warm-up.
    speed = settings.speed.model_copy(update={"port": 9, "stream_tasks": 2, "stream_retry_max_s": 0.0})
    settings = settings.model_copy(update={"speed": speed})
    assert stream.warm_up(local_spark, settings) > 0


def test_a_python_worker_freezes_its_heap_once_after_its_first_task(monkeypatch):
    import gc

    calls: list[str] = []
    monkeypatch.setattr(stream, "_FROZEN", False)
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    stream._freeze_heap()
    assert calls == ["collect", "freeze"] and stream._FROZEN
    stream._freeze_heap()  # later tasks: nothing more is frozen, their objects stay collectable
    assert calls == ["collect", "freeze"]
