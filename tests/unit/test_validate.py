from __future__ import annotations

import datetime as dt

from batch import validate
from workloads.taxi import WORKLOAD
from workloads.taxi.generate import generate_day

DAY = dt.date(2026, 11, 20)


def test_every_dirty_row_is_quarantined_with_its_rule_and_counts_reconcile(local_spark):
    table = generate_day(DAY, 3000, seed=11, dirty_share=0.06)
    df = local_spark.createDataFrame(table.to_pandas())
    valid, quarantined = validate.split(df, DAY)
    rows_in, n_valid, n_bad = df.count(), valid.count(), quarantined.count()
    assert rows_in == n_valid + n_bad
    assert abs(n_bad - 180) <= 6
    by_rule = {r[validate.REASON_COL]: r["count"] for r in quarantined.groupBy(validate.REASON_COL).count().collect()}
    assert set(by_rule) >= {"null_required_field", "outside_partition", "non_positive_duration", "unknown_zone",
                            "impossible_speed"}
    assert set(by_rule) <= set(WORKLOAD.rule_names)
    assert validate.REASON_COL not in valid.columns


def test_rules_catch_each_kind_of_bad_row(local_spark):
    base = dict(tpep_pickup_datetime=dt.datetime(2026, 11, 20, 8, 0), tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 8, 20),
                PULocationID=161, DOLocationID=236, trip_distance=3.0, passenger_count=1)
    cases = {
        "ok": {},
        "ok_zero_passengers": dict(passenger_count=0),  # accepted on purpose (workloads/taxi/tlc.py says why)
        "ok_null_passengers": dict(passenger_count=None),
        "ok_three_hours": dict(tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 11, 0), trip_distance=30.0),
        "ok_smallest_distance": dict(trip_distance=0.01, tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 8, 1)),
        "null_required_field": dict(DOLocationID=None),
        "outside_partition": dict(tpep_pickup_datetime=dt.datetime(2026, 11, 19, 23, 50)),
        "non_positive_duration": dict(tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 8, 0)),
        "duration_too_long": dict(tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 11, 0, 1), trip_distance=30.0),
        "unknown_zone": dict(PULocationID=264),
        "unknown_zone_265": dict(DOLocationID=265),
        "zero_distance": dict(trip_distance=0.0),
        "negative_or_huge_distance": dict(trip_distance=-1.0),
        "huge_distance": dict(trip_distance=200.5, tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 11, 0)),
        "passenger_count_out_of_range": dict(passenger_count=10),
        "impossible_speed": dict(trip_distance=60.0),
    }
    expected = {name: None if name.startswith("ok") else name for name in cases}
    expected |= {"unknown_zone_265": "unknown_zone", "huge_distance": "negative_or_huge_distance"}
    rows = [(name, *{**base, **override}.values()) for name, override in cases.items()]
    df = local_spark.createDataFrame(
        rows, "case string, tpep_pickup_datetime timestamp, tpep_dropoff_datetime timestamp, PULocationID int, "
              "DOLocationID int, trip_distance double, passenger_count long")
    got = {r["case"]: r[validate.REASON_COL] for r in validate.tag(df, DAY).collect()}
    assert got == expected
    assert set(expected.values()) - {None} == set(WORKLOAD.rule_names)


def test_validation_and_the_request_contract_agree_on_every_range():
    """One definition (workloads/taxi/tlc.py): what validation quarantines, the endpoint and the stream refuse."""
    from core.events import REQUEST, InvalidRequest, parse_request
    from tests.contract_corpus import trip
    from workloads.taxi import tlc

    assert REQUEST.field("PULocationID").bounds == REQUEST.field("DOLocationID").bounds == tlc.KNOWN_ZONES
    assert REQUEST.field("trip_distance").bounds == tlc.TRIP_DISTANCE_MILES
    assert REQUEST.field("passenger_count").bounds == tlc.PASSENGER_COUNT
    for zone in tlc.UNKNOWN_ZONES:
        assert not tlc.KNOWN_ZONES[0] <= zone <= tlc.KNOWN_ZONES[1]
    refused = {"PULocationID": [0, *tlc.UNKNOWN_ZONES], "DOLocationID": list(tlc.UNKNOWN_ZONES),
               "trip_distance": [0, tlc.TRIP_DISTANCE_MILES[0] / 2, tlc.TRIP_DISTANCE_MILES[1] + 0.5],
               "passenger_count": [tlc.PASSENGER_COUNT[1] + 1]}
    for name, values in refused.items():
        for value in values:
            try:
                parse_request(trip(**{name: value}))
            except InvalidRequest as exc:
                assert exc.field == name
            else:
                raise AssertionError(f"{name}={value} was accepted")
    for name, value in {"PULocationID": tlc.KNOWN_ZONES[1], "trip_distance": tlc.TRIP_DISTANCE_MILES[0],
                        "passenger_count": 0}.items():
        parse_request(trip(**{name: value}))
