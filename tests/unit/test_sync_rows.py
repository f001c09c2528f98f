"""The serving sync's pure part: messages to rows, malformed messages counted, offsets planned, for the taxi
workload (whose real-time views kept their names) and the bike one (whose views are derived with default names)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pymysql.cursors import RE_INSERT_VALUES

from core.db import load_sql
from core.events import Prediction, TripCompleted
from core.settings import Settings
from core.views import RealTimeViews
from core.workload import load
from serving import sync
from serving.sync import (
    Malformed,
    MetricRow,
    PartitionRange,
    Record,
    parse_metric,
    parse_timestamp,
    plan_ranges,
)

KINDS = {"p": "prediction", "c": "outcome", "m": "metric"}
TAXI, BIKE = load("taxi"), load("bike")
VIEWS = RealTimeViews(TAXI)


def parse_prediction(value: bytes | None) -> sync.PredictionRow:
    return sync.parse_prediction(value, TAXI, VIEWS)


def parse_outcome(value: bytes | None) -> sync.OutcomeRow:
    return sync.parse_outcome(value, TAXI)


def chunk_rows(records) -> sync.ChunkRows:
    return sync.chunk_rows(records, KINDS, TAXI)


def columns(row: sync.PredictionRow, views: RealTimeViews = VIEWS) -> dict:
    """A prediction row by the names of the predictions table's columns."""
    return dict(zip([c.name for c in views.prediction_columns], row.values, strict=True))


def prediction(**overrides) -> dict:
    value = {"schema_version": 1, "trip_id": "t-1", "model_version": "trip_duration:1.0.0-20261123T1015-abc",
             "predicted_duration_s": 612.5, "event_ts": "2026-11-23T10:15:00.250Z",
             "scored_ts": "2026-11-23T10:15:01.125+00:00", "pickup_ts": "2026-11-23T10:14:59Z",
             "PULocationID": 132, "DOLocationID": 236, "passenger_count": 2, "trip_distance": 17.3}
    value.update(overrides)
    return value


def encode(value: dict) -> bytes:
    return json.dumps(value).encode()


def test_prediction_row_from_the_stream_event():
    event = Prediction(trip_id="t-9", model_version="m:1", predicted_duration_s=300.0,
                       event_ts=dt.datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=dt.UTC),
                       scored_ts=dt.datetime(2026, 11, 23, 10, 0, 1, tzinfo=dt.UTC),
                       pickup_ts=dt.datetime(2026, 11, 23, 9, 59, 30, tzinfo=dt.UTC),
                       PULocationID=1, DOLocationID=265, passenger_count=None, trip_distance=0.0)
    row = parse_prediction(event.model_dump_json().encode())
    c = columns(row)
    assert row.key == c["trip_id"] == "t-9" and c["model_version"] == "m:1"
    assert (c["pu_location_id"], c["do_location_id"], c["passenger_count"], c["trip_distance"]) == (1, 265, None, 0.0)
    assert c["event_ts"] == dt.datetime(2026, 11, 23, 10, 0, 0, 123000)  # DATETIME(3): milliseconds
    assert c["predicted_duration_s"] == 300.0
    assert row.hour_key == (1, dt.datetime(2026, 11, 23, 9))


@pytest.mark.parametrize("text", ["2026-11-23T10:15:00Z", "2026-11-23T10:15:00+00:00", "2026-11-23T10:15:00",
                                  "2026-11-23 10:15:00.000Z", "2026-11-23T11:15:00+01:00",
                                  "2026-11-23T05:15:00-05:00"])
def test_timestamps_in_any_utc_spelling_or_offset_become_naive_utc(text):
    assert parse_timestamp(text, "ts") == dt.datetime(2026, 11, 23, 10, 15)


def test_timestamp_keeps_milliseconds_and_drops_the_rest():
    assert parse_timestamp("2026-11-23T10:15:00.987654Z", "ts").microsecond == 987000


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "", 1700000000, None,
                                   "1999-12-31T23:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_bad_timestamps_are_malformed_and_name_the_field(value):
    with pytest.raises(Malformed, match="^pickup_ts: "):
        parse_timestamp(value, "pickup_ts")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"trip_id": ""}, "trip_id"),
    ({"trip_id": "x" * 65}, "trip_id"),
    ({"trip_id": 7}, "trip_id"),
    ({"model_version": None}, "model_version"),
    ({"PULocationID": 0}, "PULocationID"),
    ({"PULocationID": 266}, "PULocationID"),
    ({"DOLocationID": "12"}, "DOLocationID"),
    ({"DOLocationID": True}, "DOLocationID"),
    ({"passenger_count": 10}, "passenger_count"),
    ({"trip_distance": -1.0}, "trip_distance"),
    ({"trip_distance": None}, "trip_distance"),
    ({"trip_distance": 501.0}, "trip_distance"),
    ({"predicted_duration_s": 1e300}, "predicted_duration_s"),
    ({"predicted_duration_s": "600"}, "predicted_duration_s"),
    ({"predicted_duration_s": float("nan")}, "predicted_duration_s"),
    ({"predicted_duration_s": 10**400}, "predicted_duration_s"),
    ({"scored_ts": None}, "scored_ts"),
    ({"event_ts": "soon"}, "event_ts"),
    ({"pickup_ts": "2026-11-23"[:7]}, "pickup_ts"),
    ({"schema_version": 2}, "schema_version"),
])
def test_malformed_predictions_name_the_field(overrides, field):
    with pytest.raises(Malformed, match=f"^{field}: "):
        parse_prediction(encode(prediction(**overrides)))


def test_prediction_without_its_request_inputs_is_malformed():
    old = prediction()
    del old["pickup_ts"], old["PULocationID"]
    with pytest.raises(Malformed, match="PULocationID|pickup_ts"):
        parse_prediction(encode(old))


def test_integral_floats_are_accepted_for_integer_fields():
    c = columns(parse_prediction(encode(prediction(PULocationID=132.0, passenger_count=1.0))))
    assert (c["pu_location_id"], c["passenger_count"]) == (132, 1)


@pytest.mark.parametrize("value", [None, b"", b"not json", b"\xff\xfe", b"[1, 2]", b"42", b'"text"',
                                   b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                   b'{"trip_id": ' + b"9" * 5000 + b"}", b'"\\' * 400_000])
@pytest.mark.parametrize("parse", [parse_prediction, parse_outcome, parse_metric,
                                   lambda v: sync.parse_prediction(v, BIKE, RealTimeViews(BIKE))])
def test_undecodable_values_are_malformed(value, parse):
    """Any bytes a client can put on a topic: refused one by one, never an exception that stops the sync."""
    with pytest.raises(Malformed):
        parse(value)


def test_outcome_row():
    event = TripCompleted(trip_id="t-1", dropoff_ts=dt.datetime(2026, 11, 23, 10, 25, tzinfo=dt.UTC),
                          duration_s=600.5)
    assert tuple(parse_outcome(event.model_dump_json().encode())) == ("t-1", dt.datetime(2026, 11, 23, 10, 25), 600.5)
    with pytest.raises(Malformed, match="^duration_s: "):
        parse_outcome(encode({"trip_id": "t-1", "dropoff_ts": "2026-11-23T10:25:00Z", "duration_s": 0}))
    with pytest.raises(Malformed, match="^dropoff_ts: "):
        parse_outcome(encode({"trip_id": "t-1", "duration_s": 60}))


def test_metric_row_with_and_without_schema_version_and_tags():
    row = parse_metric(encode({"schema_version": 1, "source": "speed.stream", "name": "stream.rows", "value": 0,
                               "tags": {"z": "1", "a": "2"}, "ts": "2026-11-23T15:24:13.715681+00:00"}))
    assert row == ("speed.stream", "stream.rows", dt.datetime(2026, 11, 23, 15, 24, 13, 715000), 0.0,
                   '{"a":"2","z":"1"}')
    bare = parse_metric(encode({"source": "batch_training", "name": "test_mae_s", "value": 272.9,
                                "ts": "2026-11-23T14:32:54Z"}))
    assert bare.tags_json is None and bare.value == 272.9


@pytest.mark.parametrize(("overrides", "field"), [
    ({"value": None}, "value"), ({"value": "1"}, "value"), ({"value": float("inf")}, "value"),
    ({"tags": ["a"]}, "tags"), ({"ts": None}, "ts"), ({"source": ""}, "source"), ({"name": "n" * 129}, "name"),
])
def test_malformed_metrics_name_the_field(overrides, field):
    value = {"source": "s", "name": "n", "value": 1.5, "ts": "2026-11-23T10:00:00Z", **overrides}
    with pytest.raises(Malformed, match=f"^{field}: "):
        parse_metric(encode(value))


def test_chunk_keeps_the_last_delivery_counts_malformed_and_advances_offsets():
    records = [
        Record("p", 0, 10, encode(prediction(trip_id="a", predicted_duration_s=100.0))),
        Record("p", 0, 11, encode(prediction(trip_id="b", PULocationID=7, pickup_ts="2026-11-23T11:59:59.999Z"))),
        Record("p", 0, 12, b"{broken"),
        Record("p", 0, 13, encode(prediction(trip_id="a", predicted_duration_s=120.0,
                                             scored_ts="2026-11-23T10:20:00Z"))),  # redelivered, re-scored
        Record("c", 2, 5, encode({"trip_id": "a", "dropoff_ts": "2026-11-23T10:30:00Z", "duration_s": 900})),
        Record("c", 2, 6, encode({"trip_id": "z", "dropoff_ts": "2026-11-23T10:30:00Z", "duration_s": -1})),
        Record("m", 1, 0, encode({"source": "s", "name": "n", "value": 1, "ts": "2026-11-23T10:00:00Z"})),
        Record("m", 1, 1, encode({"source": "s", "name": "n", "value": 2, "ts": "2026-11-23T10:00:00+00:00"})),
    ]
    rows = chunk_rows(records)
    assert set(rows.predictions) == {"a", "b"}
    assert columns(rows.predictions["a"])["predicted_duration_s"] == 120.0
    assert columns(rows.predictions["a"])["scored_ts"] == dt.datetime(2026, 11, 23, 10, 20)
    assert list(rows.outcomes) == ["a"]
    assert [m.value for m in rows.metrics.values()] == [2.0]  # same (source, name, ts): the last one
    assert rows.messages == {"p": 4, "c": 2, "m": 2}
    assert [(r.topic, r.offset) for r in rows.rejected] == [("p", 12), ("c", 6)]
    assert "duration_s" in rows.rejected[1].reason
    assert rows.next_offsets == {("p", 0): 14, ("c", 2): 7, ("m", 1): 2}  # malformed messages are consumed too
    assert rows.keys() == ["a", "b"]
    assert rows.hour_keys() == [(7, dt.datetime(2026, 11, 23, 11)), (132, dt.datetime(2026, 11, 23, 10))]


def test_a_chunk_of_only_malformed_messages_still_moves_the_offsets():
    rows = chunk_rows([Record("m", 0, 3, None)])
    assert (rows.predictions, rows.outcomes, rows.metrics) == ({}, {}, {})
    assert rows.next_offsets == {("m", 0): 4}
    assert [r.reason for r in rows.rejected] == ["empty message"]


def test_plan_starts_at_stored_offsets_else_the_beginning_and_ends_at_the_high_watermark():
    marks = {("p", 0): (0, 10), ("p", 1): (5, 9), ("c", 0): (0, 0), ("m", 0): (20, 30), ("m", 1): (0, 4)}
    stored = {("p", 0): 7, ("m", 0): 12, ("m", 1): 9}
    plan = {(r.topic, r.partition): (r.start, r.end) for r in plan_ranges(stored, marks)}
    assert plan == {
        ("p", 0): (7, 10),    # resumes
        ("p", 1): (5, 9),     # nothing stored: the beginning still held
        ("c", 0): (0, 0),     # empty
        ("m", 0): (20, 30),   # stored offsets were deleted by retention: from the oldest kept
        ("m", 1): (0, 4),     # stored past the end (topic recreated): from the beginning
    }
    assert PartitionRange("p", 0, 7, 10).size == 3 and PartitionRange("c", 0, 0, 0).size == 0


@pytest.mark.parametrize("wl", [TAXI, BIKE], ids=["taxi", "bike"])
@pytest.mark.parametrize("name", ["sync_upsert_predictions", "sync_upsert_outcomes", "sync_hour_keys_add"])
def test_bulk_statements_are_batched_by_pymysql(name, wl):
    """PyMySQL packs executemany into multi-row VALUES only when the statement matches this pattern."""
    assert RE_INSERT_VALUES.match(RealTimeViews(wl).statement(name))


@pytest.mark.parametrize("name", ["sync_upsert_metrics", "sync_upsert_offsets"])
def test_shared_bulk_statements_are_batched_by_pymysql(name):
    assert RE_INSERT_VALUES.match(load_sql(f"serving/{name}"))


def statement_columns(sql: str) -> list[str]:
    return [c.strip() for c in sql.split("(", 1)[1].split(")", 1)[0].split(",")]


@pytest.mark.parametrize("wl", [TAXI, BIKE], ids=["taxi", "bike"])
def test_row_values_are_the_statement_columns_in_order(wl):
    views = RealTimeViews(wl)
    sql = views.statement("sync_upsert_predictions")
    assert statement_columns(sql) == [c.name for c in views.prediction_columns]
    assert sql.count("%s") == len(views.prediction_columns)
    outcomes = views.statement("sync_upsert_outcomes")
    assert statement_columns(outcomes) == [wl.request.key, wl.outcome.time, wl.outcome.value]
    metrics = load_sql("serving/sync_upsert_metrics")
    assert statement_columns(metrics) == list(MetricRow._fields) and metrics.count("%s") == len(MetricRow._fields)


def bike_prediction(**overrides) -> dict:
    value = {"schema_version": 1, "ride_id": "r-1", "model_version": "bike_overtime:1.0.0-20261123T1015-abc",
             "overtime_probability": 0.25, "event_ts": "2026-11-23T10:15:00.250Z",
             "scored_ts": "2026-11-23T10:15:01.125Z", "started_at": "2026-11-23T10:14:59Z",
             "start_station_id": "6140.05", "rideable_type": "electric_bike", "member_casual": "member"}
    value.update(overrides)
    return value


def test_bike_rows_are_derived_from_its_contract():
    views = RealTimeViews(BIKE)
    row = sync.parse_prediction(encode(bike_prediction()), BIKE, views)
    c = columns(row, views)
    assert row.key == "r-1" and row.hour_key == ("6140.05", dt.datetime(2026, 11, 23, 10))
    assert (c["start_station_id"], c["rideable_type"], c["member_casual"], c["overtime_probability"]) == \
        ("6140.05", "electric_bike", "member", 0.25)
    with pytest.raises(Malformed, match="^member_casual: "):
        sync.parse_prediction(encode(bike_prediction(member_casual="guest")), BIKE, views)
    with pytest.raises(Malformed, match="^overtime_probability: "):
        sync.parse_prediction(encode(bike_prediction(overtime_probability="high")), BIKE, views)
    outcome = sync.parse_outcome(encode({"ride_id": "r-1", "ended_at": "2026-11-23T11:00:00Z", "duration_s": 2746}),
                                 BIKE)
    assert tuple(outcome) == ("r-1", dt.datetime(2026, 11, 23, 11), 2746.0)


def test_each_workload_syncs_its_own_topics_and_the_default_one_the_metrics_too():
    s = Settings()
    assert sync.topic_kinds(s, "taxi") == {"trips.predictions": "prediction", "trips.completed": "outcome",
                                           "metrics": "metric"}
    assert sync.topic_kinds(s, "bike") == {"bike.predictions": "prediction", "bike.completed": "outcome"}
    assert sync.topic_kinds(s, "bike", metrics=True)["metrics"] == "metric"
