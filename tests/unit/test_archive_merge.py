"""Pure parts of the Hive archive and the Lambda merge: coverage, retention cutoff, window split, sums, batch view."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.task import log_loss
from core.views import RealTimeViews
from core.workload import load
from serving.archive import advance, aligned, hive_tables, hourly_view, retention_cutoff
from serving.merge import Sums, split, window
from workloads.taxi.tlc import RAW_SCHEMA

TAXI, BIKE = load("taxi"), load("bike")

D = dt.date(2026, 3, 10)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def test_coverage_moves_over_consecutive_archived_days_only():
    assert advance(day(0), []) == day(0)
    assert advance(day(0), [day(0)]) == day(1)
    assert advance(day(0), [day(0), day(1), day(2)]) == day(3)
    # A gap at day 1: day 2 waits until day 1 is archived, then coverage jumps over both.
    assert advance(day(0), [day(0), day(2)]) == day(1)
    assert advance(day(1), [day(0), day(1), day(2)]) == day(3)
    # An archived day after coverage (out of order) moves nothing by itself.
    assert advance(day(0), [day(5)]) == day(0)


def test_retention_cutoff():
    assert retention_cutoff(day(10), 7) == day(3)


def test_window_is_today_and_the_days_before():
    assert window(1, D) == (D, D)
    assert window(30, D) == (day(-29), D)
    with pytest.raises(ValueError):
        window(0, D)


def test_split_reads_hive_before_coverage_and_mysql_from_it_on():
    assert split(day(0), day(6), day(4)) == [("hive", day(0), day(3)), ("mysql", day(4), day(6))]
    assert split(day(0), day(6), None) == [("mysql", day(0), day(6))]
    assert split(day(0), day(6), day(0)) == [("mysql", day(0), day(6))]
    assert split(day(0), day(6), day(7)) == [("hive", day(0), day(6))]
    assert split(day(0), day(6), day(9)) == [("hive", day(0), day(6))]
    assert split(day(3), day(6), day(1)) == [("mysql", day(3), day(6))]


@given(first=st.integers(-20, 20), length=st.integers(1, 40), covered=st.none() | st.integers(-40, 60))
def test_split_reads_every_day_of_the_window_from_exactly_one_side(first, length, covered):
    first_day, last_day = day(first), day(first + length - 1)
    covered_until = None if covered is None else day(covered)
    parts = split(first_day, last_day, covered_until)
    read = [(src, d) for src, a, b in parts for d in (a + dt.timedelta(days=i) for i in range((b - a).days + 1))]
    assert [d for _, d in read] == [first_day + dt.timedelta(days=i) for i in range(length)]
    for src, d in read:
        assert src == ("hive" if covered_until is not None and d < covered_until else "mysql")


def test_sums_combine_counts_not_averages():
    batch = Sums(trips=10, sum_predicted_s=6000.0, completed=8, sum_abs_error_s=800.0)  # MAE 100
    realtime = Sums(trips=2, sum_predicted_s=600.0, completed=1, sum_abs_error_s=10.0)  # MAE 10
    total = batch + realtime
    assert total == Sums(12, 6600.0, 9, 810.0)
    assert total.mae_s == pytest.approx(90.0)  # not (100 + 10) / 2
    assert total.mean_predicted_s == pytest.approx(550.0)
    assert Sums().mae_s is None and Sums().mean_predicted_s is None


def test_zone_hour_view_matches_the_real_time_definition(local_spark):
    t = dt.datetime(2026, 3, 10, 8, 0)
    rows = [  # zone, pickup, predicted, actual (None: no outcome yet)
        (5, t.replace(minute=1), 600.0, 700.0),
        (5, t.replace(minute=59), 900.0, 850.0),
        (5, t.replace(hour=9, minute=30), 300.0, None),
        (7, t.replace(minute=10), 1000.0, None),
    ]
    df = local_spark.createDataFrame(
        rows, "pu_location_id int, pickup_ts timestamp_ntz, predicted_duration_s double, actual_duration_s double")
    got = {(r.pu_location_id, r.hour_start): (r.trips, r.sum_predicted_s, r.completed, r.sum_actual_s,
                                              r.sum_abs_error_s)
           for r in hourly_view(df, RealTimeViews(TAXI)).collect()}
    assert got == {
        (5, t): (2, 1500.0, 2, 1550.0, 150.0),
        (5, t.replace(hour=9)): (1, 300.0, 0, 0.0, 0.0),
        (7, t): (1, 1000.0, 0, 0.0, 0.0),
    }


def test_bike_hourly_view_sums_the_log_loss_of_completed_rides(local_spark):
    t = dt.datetime(2026, 6, 3, 17, 0)
    rows = [("6140.05", t.replace(minute=5), 0.2, 1.0), ("6140.05", t.replace(minute=40), 0.9, 0.0),
            ("6140.05", t.replace(minute=50), 0.5, None), ("HB101", t, 0.1, 0.0)]
    df = local_spark.createDataFrame(
        rows, "start_station_id string, started_at timestamp_ntz, overtime_probability double, actual_overtime double")
    got = {r.start_station_id: r for r in hourly_view(df, RealTimeViews(BIKE)).collect()}
    assert (got["6140.05"].rides, got["6140.05"].completed, got["6140.05"].sum_actual) == (3, 2, 1.0)
    assert got["6140.05"].sum_loss / 2 == pytest.approx(log_loss([1.0, 0.0], [0.2, 0.9]))
    assert got["HB101"].sum_loss == pytest.approx(log_loss([0.0], [0.1]))


def ddl_columns(ddl: str) -> list[str]:
    body = ddl[ddl.index("(") + 1:ddl.index(") USING")]
    return [line.strip().split()[0] for line in body.strip().splitlines()]


def test_hive_tables_are_derived_from_the_raw_schema_and_the_views():
    taxi = hive_tables(TAXI)
    assert (taxi.validated, taxi.quarantine, taxi.predictions, taxi.hourly, taxi.model_error, taxi.partition) == (
        "trips", "quarantine", "predictions", "zone_hour_stats", "model_error", "pickup_date")
    ddl = dict(zip(taxi.columns, taxi.ddl("lake"), strict=True))
    assert ddl_columns(ddl["trips"]) == [f.name for f in RAW_SCHEMA] + ["pickup_date"]
    assert ddl_columns(ddl["quarantine"]) == [f.name for f in RAW_SCHEMA] + ["failed_rule", "pickup_date"]
    assert "CREATE TABLE IF NOT EXISTS lake.trips (" in ddl["trips"] and "PARTITIONED BY (pickup_date)" in ddl["trips"]
    assert dict(taxi.columns["trips"])["VendorID"] == "INT" and dict(taxi.columns["trips"])["passenger_count"] == \
        "BIGINT"
    assert set(dict(taxi.columns["predictions"])) == {
        "trip_id", "model_version", "pu_location_id", "do_location_id", "passenger_count", "trip_distance",
        "pickup_ts", "predicted_duration_s", "event_ts", "scored_ts", "dropoff_ts", "actual_duration_s"}
    assert dict(taxi.columns["zone_hour_stats"]) == {
        "pu_location_id": "INT", "hour_start": "TIMESTAMP", "trips": "BIGINT", "sum_predicted_s": "DOUBLE",
        "completed": "BIGINT", "sum_actual_s": "DOUBLE", "sum_abs_error_s": "DOUBLE"}
    bike = hive_tables(BIKE)
    assert (bike.validated, bike.quarantine, bike.predictions, bike.hourly, bike.model_error, bike.partition) == (
        "bike_validated", "bike_quarantine", "bike_predictions", "bike_hourly", "bike_model_error",
        BIKE.partition_column)
    assert dict(bike.columns["bike_model_error"]) == {"model_version": "STRING", "rides": "BIGINT",
                                                      "completed": "BIGINT", "sum_loss": "DOUBLE"}
    assert dict(bike.columns["bike_hourly"])["start_station_id"] == "STRING"


def test_aligned_orders_and_casts_columns_like_the_table(local_spark):
    schema = local_spark.createDataFrame([], "trip_id string, trips bigint, pickup_date date").schema
    df = local_spark.createDataFrame([(3, "a", "ignored")], "trips int, trip_id string, extra string")
    out = aligned(df, schema, D, "pickup_date")
    assert out.columns == ["trip_id", "trips", "pickup_date"]
    assert out.schema["trips"].dataType.typeName() == "long"
    assert tuple(out.first()) == ("a", 3, D)
