"""The streaming job's pure transforms on a plain local Spark: validation rules, dead letters, features."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from core import features
from core.events import Prediction, TripRequest
from core.settings import Settings
from speed import stream
from speed.predictor import request_columns

GOOD = {"trip_id": "ok-1", "pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236,
        "passenger_count": 1, "trip_distance": 2.1, "VendorID": 2}

CASES = [
    (json.dumps(GOOD), None),
    (json.dumps(dict(GOOD, trip_id="ok-2", passenger_count=None, pickup_ts="2026-01-10T23:59:00+05:00")), None),
    (json.dumps({k: v for k, v in dict(GOOD, trip_id="ok-3").items() if k != "passenger_count"}), None),
    ("not json at all", "not_a_json_object"),
    ("[1, 2, 3]", "not_a_json_object"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "trip_id"}), "trip_id"),
    (json.dumps(dict(GOOD, trip_id=5)), "trip_id"),
    (json.dumps(dict(GOOD, trip_id="b-ts", pickup_ts="soon")), "pickup_ts"),
    (json.dumps(dict(GOOD, trip_id="b-year", pickup_ts="1999-01-01T00:00:00")), "pickup_ts"),
    (json.dumps(dict(GOOD, trip_id="b-pu", PULocationID=0)), "PULocationID"),
    (json.dumps(dict(GOOD, trip_id="b-pu2", PULocationID=1.5)), "PULocationID"),
    (json.dumps(dict(GOOD, trip_id="b-do", DOLocationID="x")), "DOLocationID"),
    (json.dumps(dict(GOOD, trip_id="b-dist", trip_distance=-3)), "trip_distance"),
    (json.dumps(dict(GOOD, trip_id="b-pax", passenger_count=12)), "passenger_count"),
]


@pytest.fixture(scope="module")
def parsed(local_spark):
    rows = [("trips.requests", 0, i, dt.datetime(2026, 1, 5, 9, 0, i), payload.encode())
            for i, (payload, _) in enumerate(CASES)]
    df = local_spark.createDataFrame(rows, "topic string, partition int, offset long, timestamp timestamp, "
                                           "value binary")
    return stream.parse(df).cache()


def test_each_rule_is_named_and_valid_events_pass(parsed):
    errors = {r.source_offset: r.error for r in parsed.collect()}
    for i, (_, rule) in enumerate(CASES):
        if rule is None:
            assert errors[i] is None, (i, errors[i])
        else:
            assert errors[i] is not None and errors[i].startswith(rule), (i, errors[i])


def test_stream_rules_agree_with_the_api_schema(parsed):
    errors = {r.source_offset: r.error for r in parsed.collect()}
    for i, (payload, _) in enumerate(CASES):
        try:
            TripRequest.model_validate_json(payload)
            api_ok = True
        except ValidationError:
            api_ok = False
        assert api_ok == (errors[i] is None), (payload, errors[i])


@pytest.fixture(scope="module")
def rows_df(parsed):
    return stream.batch_rows(parsed, Settings())


@pytest.fixture(scope="module")
def rows(rows_df) -> list[dict]:
    return rows_df.toArrow().to_pylist()


class FixedService:
    """Stands in for the HTTP client in ``score_batch``: a pure function of the features, no I/O."""

    settings = None

    def __init__(self, fail_first: int = 0):
        self.retries = 0
        self.calls: list[list[str]] = []
        self.fail_first = fail_first

    def score(self, trip_ids, columns):
        self.retries += self.fail_first
        self.fail_first = 0
        self.calls.append(trip_ids)
        return {"model_version": "m:1",
                "predictions": [{"trip_id": t, "predicted_duration_s": 100.0 + d}
                                for t, d in zip(trip_ids, columns["log_distance"])]}


def test_score_batch_scores_valid_rows_only_in_chunks(rows_df):
    batch = rows_df.toArrow().to_batches()[0]
    service = FixedService(fail_first=2)
    out = stream.score_batch(service, batch, chunk=2).to_pylist()
    assert [len(c) for c in service.calls] == [2, 1]
    for r in out:
        if r["error"] is None:
            assert r["predicted_duration_s"] == pytest.approx(100.0 + r["log_distance"])
            assert r["model_version"] == "m:1" and r["scored_ts"] is not None
        else:
            assert r["predicted_duration_s"] is None and r["model_version"] is None
    assert {r["service_retries"] for r in out if r["trip_id"] in service.calls[0]} == {2}


@pytest.fixture(scope="module")
def sink_rows(local_spark, rows_df) -> list[dict]:
    from core.settings import Settings

    settings = Settings()
    service = FixedService()
    table = rows_df.toArrow()
    scored = pa.Table.from_batches([stream.score_batch(service, b, chunk=500) for b in table.to_batches()])
    df = local_spark.createDataFrame(scored.to_pandas(), stream.scored_schema(rows_df))
    return [r.asDict() for r in stream.outputs(df, settings).collect()]


def test_dead_letters_carry_payload_reason_and_source(sink_rows):
    dlq = [r for r in sink_rows if r["topic"] == "trips.dlq"]
    assert len(dlq) == sum(1 for _, rule in CASES if rule)
    row = next(r for r in dlq if json.loads(r["value"])["payload"] == "not json at all")
    value = json.loads(row["value"])
    assert row["key"] == "trips.requests/0/3" and value["error"] == "not_a_json_object"
    assert value["source_topic"] == "trips.requests" and value["source_offset"] == 3 and value["ts"]


def test_spark_features_match_the_in_process_form(rows):
    valid = sorted((r for r in rows if r["error"] is None), key=lambda r: r["trip_id"])
    assert [r["trip_id"] for r in valid] == ["ok-1", "ok-2", "ok-3"]
    trips = sorted((TripRequest.model_validate_json(p) for p, rule in CASES if rule is None),
                   key=lambda t: t.trip_id)
    expected = features.compute_numpy(request_columns(trips))
    for name in features.FEATURE_NAMES:
        np.testing.assert_allclose([r[name] for r in valid], expected[name], rtol=1e-9, err_msg=name)


def test_prediction_values_follow_the_contract(sink_rows):
    preds = {r["key"]: r for r in sink_rows if r["topic"] == "trips.predictions"}
    assert sorted(preds) == ["ok-1", "ok-2", "ok-3"]
    p = Prediction.model_validate_json(preds["ok-2"]["value"])
    assert p.trip_id == "ok-2" and p.PULocationID == 161 and p.passenger_count is None
    assert p.model_version == "m:1" and p.predicted_duration_s > 100.0
    assert p.pickup_ts == dt.datetime(2026, 1, 10, 18, 59, tzinfo=dt.UTC)
    assert p.event_ts == dt.datetime(2026, 1, 5, 9, 0, 1, tzinfo=dt.UTC)
    assert "passenger_count" in json.loads(preds["ok-2"]["value"])  # nulls are written, not dropped


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


# ----------------------------------------------------------------------------------- no input makes a record too large
POISON = {
    "quotes": b'{"trip_id": "' + b'\\"' * 300_000,  # unterminated; JSON escaping doubles it
    "quotes_and_backslashes": b'"\\' * 500_000,
    "control_characters": b'"' + bytes(range(1, 32)) * 30_000,  # each escapes to 6 bytes
    "deep_nesting": b"[" * 500_000 + b"]" * 500_000,
    "invalid_utf8": b'{"trip_id": "' + b"\xff\xfe\xc3" * 300_000 + b'"}',
    "huge_numbers": json.dumps(dict(GOOD, trip_id="huge", PULocationID=10 ** 400, trip_distance=1e308,
                                    passenger_count=-(10 ** 300))).encode(),
    "null": None,
}


def poison_sink_rows(spark, settings) -> list[dict]:
    rows = [("trips.requests", 0, i, dt.datetime(2026, 1, 5, 9, 0, 0), payload)
            for i, payload in enumerate([*POISON.values(), json.dumps(GOOD).encode()])]
    df = spark.createDataFrame(rows, "topic string, partition int, offset long, timestamp timestamp, value binary")
    batch_rows = stream.batch_rows(stream.parse(df), settings)
    table = batch_rows.toArrow()
    scored = pa.Table.from_batches([stream.score_batch(FixedService(), b, chunk=500) for b in table.to_batches()])
    scored_df = spark.createDataFrame(scored.to_pandas(), stream.scored_schema(batch_rows))
    return [r.asDict() for r in stream.outputs(scored_df, settings).collect()]


def test_every_record_is_bounded_whatever_the_input(local_spark):
    import hashlib

    from core.settings import Settings

    settings = Settings()
    out = poison_sink_rows(local_spark, settings)
    assert len(out) == len(POISON) + 1
    assert [r["key"] for r in out if r["topic"] == "trips.predictions"] == [GOOD["trip_id"]]
    for i, (name, payload) in enumerate(POISON.items()):
        row = next(r for r in out if r["key"] == f"trips.requests/0/{i}")
        assert row["topic"] == "trips.dlq", name
        assert len(row["value"].encode()) <= settings.speed.stream_record_max_bytes, name
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


def test_a_record_over_the_limit_becomes_a_small_dead_letter(local_spark):
    from core.settings import Settings

    settings = Settings(speed={"dead_letter_payload_bytes": 200_000, "stream_record_max_bytes": 8192})
    out = poison_sink_rows(local_spark, settings)
    quotes = json.loads(next(r for r in out if r["key"] == "trips.requests/0/0")["value"])
    assert quotes["error"].startswith(stream.RECORD_TOO_LARGE) and "trips.dlq" in quotes["error"]
    assert quotes["payload"] is None and quotes["payload_bytes"] == len(POISON["quotes"])
    assert all(len(r["value"].encode()) <= 8192 for r in out)
    assert [r["key"] for r in out if r["topic"] == "trips.predictions"] == [GOOD["trip_id"]]


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
