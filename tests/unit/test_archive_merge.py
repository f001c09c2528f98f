"""Pure parts of the Hive archive and the Lambda merge: coverage, retention cutoff, window split, sums, batch view."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.db import load_sql
from serving.archive import advance, aligned, retention_cutoff, zone_hour_view
from serving.merge import Sums, split, window
from workloads.taxi.tlc import RAW_SCHEMA

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
                                              r.sum_abs_error_s) for r in zone_hour_view(df).collect()}
    assert got == {
        (5, t): (2, 1500.0, 2, 1550.0, 150.0),
        (5, t.replace(hour=9)): (1, 300.0, 0, 0.0, 0.0),
        (7, t): (1, 1000.0, 0, 0.0, 0.0),
    }


def test_hive_trips_tables_hold_the_tlc_columns_then_the_partition():
    for table, extra in (("trips", []), ("quarantine", ["failed_rule"])):
        ddl = load_sql(f"hive/{table}")
        body = ddl[ddl.index("(") + 1:ddl.index(") USING")]
        columns = [line.split()[0] for line in body.strip().splitlines()]
        assert columns == [f.name for f in RAW_SCHEMA] + extra + ["pickup_date"], table


def test_aligned_orders_and_casts_columns_like_the_table(local_spark):
    schema = local_spark.createDataFrame([], "trip_id string, trips bigint, pickup_date date").schema
    df = local_spark.createDataFrame([(3, "a", "ignored")], "trips int, trip_id string, extra string")
    out = aligned(df, schema, D)
    assert out.columns == ["trip_id", "trips", "pickup_date"]
    assert out.schema["trips"].dataType.typeName() == "long"
    assert tuple(out.first()) == ("a", 3, D)
