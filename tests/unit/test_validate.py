from __future__ import annotations

import datetime as dt

from batch import validate
from batch.generate import generate_day

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
    assert set(by_rule) <= set(validate.RULE_NAMES)
    assert validate.REASON_COL not in valid.columns


def test_rules_catch_each_kind_of_bad_row(local_spark):
    base = dict(tpep_pickup_datetime=dt.datetime(2026, 11, 20, 8, 0), tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 8, 20),
                PULocationID=161, DOLocationID=236, trip_distance=3.0)
    cases = {
        "ok": {},
        "null_required_field": dict(DOLocationID=None),
        "outside_partition": dict(tpep_pickup_datetime=dt.datetime(2026, 11, 19, 23, 50)),
        "non_positive_duration": dict(tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 8, 0)),
        "duration_too_long": dict(tpep_dropoff_datetime=dt.datetime(2026, 11, 20, 15, 0)),
        "unknown_zone": dict(PULocationID=264),
        "negative_or_huge_distance": dict(trip_distance=-1.0),
        "impossible_speed": dict(trip_distance=60.0),
    }
    rows = [(name, *{**base, **override}.values()) for name, override in cases.items()]
    df = local_spark.createDataFrame(
        rows, "case string, tpep_pickup_datetime timestamp, tpep_dropoff_datetime timestamp, PULocationID int, "
              "DOLocationID int, trip_distance double")
    got = {r["case"]: r[validate.REASON_COL] for r in validate.tag(df, DAY).collect()}
    assert got == {name: (None if name == "ok" else name) for name in cases}
