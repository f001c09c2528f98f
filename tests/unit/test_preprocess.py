from __future__ import annotations

import datetime as dt

from batch import preprocess, validate
from batch.generate import generate_day
from core import features


def test_split_bounds_are_time_ordered():
    train_end, val_end = preprocess.split_bounds(dt.date(2026, 11, 1), dt.date(2026, 11, 10))
    assert dt.datetime(2026, 11, 1) < train_end < val_end < dt.datetime(2026, 11, 11)
    assert train_end == dt.datetime(2026, 11, 8)


def test_transform_adds_features_label_and_time_split(local_spark):
    days = [dt.date(2026, 11, 20), dt.date(2026, 11, 21)]
    frames = [local_spark.createDataFrame(generate_day(d, 800, seed=2).to_pandas()) for d in days]
    valid = [validate.split(f, d)[0] for f, d in zip(frames, days)]
    df = valid[0].unionByName(valid[1])
    train_end, val_end = preprocess.split_bounds(days[0], days[1])
    out = preprocess.transform(df, train_end, val_end)
    assert set(features.FEATURE_NAMES) <= set(out.columns)
    assert out.where(out[preprocess.LABEL] <= 0).count() == 0
    bounds = {r["split"]: (r["lo"], r["hi"]) for r in out.groupBy("split").agg({"pickup_ts": "min"}).withColumnRenamed(
        "min(pickup_ts)", "lo").join(out.groupBy("split").agg({"pickup_ts": "max"}).withColumnRenamed(
            "max(pickup_ts)", "hi"), "split").collect()}
    assert bounds["train"][1] < bounds["val"][0] <= bounds["val"][1] < bounds["test"][0]
    assert out.count() == df.count()
