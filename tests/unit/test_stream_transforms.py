"""The streaming job's pure transforms on a plain local Spark: validation rules, dead letters, features."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from pydantic import ValidationError

from core import features
from core.events import Prediction, TripRequest
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
def rows(parsed) -> list[dict]:
    return stream.batch_rows(parsed).toArrow().to_pylist()


def test_dead_letters_carry_payload_reason_and_source(rows):
    now = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    dlq = [stream.dead_letter(r, now) for r in rows if r["error"] is not None]
    assert len(dlq) == sum(1 for _, rule in CASES if rule)
    key, value = next(d for d in dlq if d[1]["payload"] == "not json at all")
    assert key == "trips.requests/0/3" and value["error"] == "not_a_json_object"
    assert value["source_topic"] == "trips.requests" and value["source_offset"] == 3 and value["ts"]


def test_spark_features_match_the_in_process_form(rows):
    valid = sorted((r for r in rows if r["error"] is None), key=lambda r: r["trip_id"])
    assert [r["trip_id"] for r in valid] == ["ok-1", "ok-2", "ok-3"]
    trips = sorted((TripRequest.model_validate_json(p) for p, rule in CASES if rule is None),
                   key=lambda t: t.trip_id)
    expected = features.compute_numpy(request_columns(trips))
    for name in features.FEATURE_NAMES:
        np.testing.assert_allclose([r[name] for r in valid], expected[name], rtol=1e-9, err_msg=name)


def test_prediction_values_follow_the_contract(rows):
    row = next(r for r in rows if r["trip_id"] == "ok-2")
    value = stream.prediction(row, 812.5, "m:1", dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC))
    p = Prediction.model_validate(value)
    assert p.trip_id == "ok-2" and p.PULocationID == 161 and p.passenger_count is None
    assert p.pickup_ts == dt.datetime(2026, 1, 10, 18, 59, tzinfo=dt.UTC)


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
