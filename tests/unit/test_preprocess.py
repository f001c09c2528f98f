from __future__ import annotations

import datetime as dt

import pytest

from batch import preprocess, validate
from workloads.taxi import WORKLOAD, features
from workloads.taxi.generate import generate_day


def test_cut_points_are_quantiles_of_the_rows_present(local_spark):
    """A file that ends mid-morning on its last day: calendar fractions of the covered days gave the test split
    0 rows; quantiles of pickup time over the rows give it its 15%."""
    start = dt.datetime(2018, 1, 1)
    rows = [(start + dt.timedelta(minutes=3 * i),) for i in range(10_000)]  # 2018-01-01 .. 2018-01-21 21:57
    df = local_spark.createDataFrame(rows, "pickup_ts timestamp") \
        .selectExpr("CAST(pickup_ts AS TIMESTAMP_NTZ) AS pickup_ts")
    train_end, val_end = preprocess.cut_points(df, "pickup_ts", 0.7, 0.15)
    assert abs(train_end - rows[7000][0]) <= dt.timedelta(minutes=3 * 2)
    assert abs(val_end - rows[8500][0]) <= dt.timedelta(minutes=3 * 2)
    counts = {"train": sum(r[0] < train_end for r in rows), "val": sum(train_end <= r[0] < val_end for r in rows),
              "test": sum(r[0] >= val_end for r in rows)}
    assert all(abs(counts[s] - n) <= 3 for s, n in {"train": 7000, "val": 1500, "test": 1500}.items()), counts


def test_cut_points_of_nothing_say_so(local_spark):
    df = local_spark.createDataFrame([], "pickup_ts timestamp_ntz")
    with pytest.raises(preprocess.DataError, match="no validated rows"):
        preprocess.cut_points(df, "pickup_ts")


def test_a_split_below_the_minimum_is_refused_with_the_counts_and_what_to_do():
    days = [dt.date(2018, 1, 1), dt.date(2018, 1, 3)]
    preprocess.check_splits({"train": 700, "val": 150, "test": 150}, 150, days)
    with pytest.raises(preprocess.SplitTooSmall) as exc:
        preprocess.check_splits({"train": 700, "val": 150, "test": 0}, 100, days)
    message = str(exc.value)
    assert "train 700, val 150, test 0" in message and "test below the minimum of 100" in message
    assert "2018-01-01 .. 2018-01-03" in message and "LAMBDAML_BATCH__MIN_SPLIT_ROWS" in message
    assert isinstance(exc.value, preprocess.DataError)  # a data error: Airflow does not retry it


def test_transform_adds_features_label_and_time_split(local_spark):
    days = [dt.date(2026, 11, 20), dt.date(2026, 11, 21)]
    frames = [local_spark.createDataFrame(generate_day(d, 800, seed=2).to_pandas()) for d in days]
    valid = [validate.split(f, d)[0] for f, d in zip(frames, days)]
    df = valid[0].unionByName(valid[1])
    examples = WORKLOAD.examples(df)
    train_end, val_end = preprocess.cut_points(examples, "pickup_ts")
    out = preprocess.transform(examples, train_end, val_end, WORKLOAD)
    assert set(features.FEATURE_NAMES) <= set(out.columns)
    assert out.where(out[WORKLOAD.label] <= 0).count() == 0
    bounds = {r["split"]: (r["lo"], r["hi"]) for r in out.groupBy("split").agg({"pickup_ts": "min"}).withColumnRenamed(
        "min(pickup_ts)", "lo").join(out.groupBy("split").agg({"pickup_ts": "max"}).withColumnRenamed(
            "max(pickup_ts)", "hi"), "split").collect()}
    assert bounds["train"][1] < bounds["val"][0] <= bounds["val"][1] < bounds["test"][0]
    assert out.count() == df.count()
