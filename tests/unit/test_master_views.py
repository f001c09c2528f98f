"""The batch views' reading of the master log (``serving.master``), on a plain local Spark and Parquet files laid out
as the lake sink writes them: parsed by the serving sync's rules, the last delivery of a key, the day's predictions
joined to their outcomes, malformed records counted and left out."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import get_settings
from core.views import RealTimeViews
from core.workload import load
from serving import master
from serving.archive import model_error_view

TAXI = load("taxi")
VIEWS = RealTimeViews(TAXI)
D = dt.date(2031, 5, 6)
UTC = dt.UTC


def prediction(trip_id: str, pickup: dt.datetime, predicted: float, version: str = "m:1.0.0") -> bytes:
    return json.dumps({"schema_version": 1, "trip_id": trip_id, "model_version": version,
                       "predicted_duration_s": predicted, "event_ts": f"{pickup.isoformat()}Z",
                       "scored_ts": f"{pickup.isoformat()}Z", "pickup_ts": f"{pickup.isoformat()}Z",
                       "PULocationID": 132, "DOLocationID": 236, "passenger_count": 1,
                       "trip_distance": 3.5}).encode()


def outcome(trip_id: str, dropoff: dt.datetime, duration: float) -> bytes:
    return json.dumps({"schema_version": 1, "trip_id": trip_id, "dropoff_ts": f"{dropoff.isoformat()}Z",
                       "duration_s": duration}).encode()


def write_log(root, topic: str, records: list[tuple[int, dt.datetime, bytes]]) -> None:
    """Records (offset, Kafka timestamp, value) of partition 0 of ``topic``, one file per arrival date."""
    by_date: dict[dt.date, list] = {}
    for offset, ts, value in records:
        by_date.setdefault(ts.date(), []).append({"partition": 0, "offset": offset, "timestamp": ts.replace(tzinfo=UTC),
                                                  "key": b"k", "value": value})
    schema = pa.schema([("partition", pa.int32()), ("offset", pa.int64()), ("timestamp", pa.timestamp("us", "UTC")),
                        ("key", pa.binary()), ("value", pa.binary())])
    for date, rows in by_date.items():
        folder = root / f"topic={topic}" / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"part-{offset}.parquet")


@pytest.fixture
def logged(tmp_path):
    settings = get_settings()
    settings = settings.model_copy(update={"speed": settings.speed.model_copy(
        update={"lake_sink_path": str(tmp_path)})})
    at = dt.datetime.combine(D, dt.time(9, 30))
    later = at + dt.timedelta(days=1)
    topics = settings.kafka.for_workload("taxi")
    write_log(tmp_path, topics.predictions, [
        (0, at, prediction("t-1", at, 500.0)),
        (1, at + dt.timedelta(seconds=5), prediction("t-1", at, 520.0, "m:1.1.0")),  # redelivered: this one wins
        (2, at, prediction("t-2", at.replace(hour=10), 800.0)),
        (3, at, b"{not json"),
        (4, later, prediction("t-3", later, 300.0)),  # the next day's request
        (5, at - dt.timedelta(days=3), prediction("t-old", at, 100.0)),  # arrived before the day before D
    ])
    write_log(tmp_path, topics.completed, [
        (0, at + dt.timedelta(minutes=9), outcome("t-1", at + dt.timedelta(minutes=9), 540.0)),
        (1, later, outcome("t-2", later, 900.0)),  # arrives the next day
        (2, later, outcome("t-3", later, 290.0)),
    ])
    return settings


def test_a_days_predictions_come_from_the_log_parsed_once_each_with_their_outcomes(local_spark, logged):
    data = master.parsed(local_spark, logged, TAXI, VIEWS, master.first_arrival(D))
    day = {r.trip_id: r for r in master.joined(local_spark, TAXI, VIEWS, data, D).collect()}
    assert sorted(day) == ["t-1", "t-2"]  # t-3 is the next day's; t-old arrived before the log is read from
    assert (day["t-1"].predicted_duration_s, day["t-1"].model_version) == (520.0, "m:1.1.0")
    assert (day["t-1"].actual_duration_s, day["t-2"].actual_duration_s) == (540.0, 900.0)
    assert day["t-2"].dropoff_ts == dt.datetime.combine(D + dt.timedelta(days=1), dt.time(9, 30))
    malformed = data.records.where("malformed IS NOT NULL").collect()
    assert [(r.offset, r.malformed[:8]) for r in malformed] == [(3, "not JSON")]
    errors = {r.model_version: r for r in model_error_view(master.joined(local_spark, TAXI, VIEWS, data, D),
                                                           VIEWS).collect()}
    assert sorted(errors) == ["m:1.0.0", "m:1.1.0"]
    assert (errors["m:1.1.0"].trips, errors["m:1.1.0"].completed, errors["m:1.1.0"].sum_abs_error_s) == (1, 1, 20.0)
    assert (errors["m:1.0.0"].completed, errors["m:1.0.0"].sum_abs_error_s) == (1, 100.0)


def test_a_missing_log_reads_as_no_events(local_spark, tmp_path):
    settings = get_settings()
    settings = settings.model_copy(update={"speed": settings.speed.model_copy(
        update={"lake_sink_path": str(tmp_path / "nothing")})})
    assert master.events(local_spark, settings, ["trips.predictions"]).count() == 0
