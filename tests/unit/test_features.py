"""The Spark form and the in-process form of every feature agree on the same rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from workloads.taxi import features
from workloads.taxi.generate import generate_day


def request_frame(rows: int = 2000) -> pd.DataFrame:
    raw = generate_day(dt.date(2026, 11, 22), rows, seed=5, dirty_share=0.05).to_pandas()
    frame = pd.DataFrame(
        {
            "pickup_ts": raw["tpep_pickup_datetime"],
            "PULocationID": raw["PULocationID"].astype("float64"),
            "DOLocationID": raw["DOLocationID"].astype("float64"),
            "passenger_count": raw["passenger_count"].astype("float64"),
            "trip_distance": raw["trip_distance"],
            "VendorID": raw["VendorID"].astype("float64"),
        }
    )
    # Edge cases: unknown and out-of-range zones, missing and extreme values, a Sunday and a Monday midnight.
    edge = pd.DataFrame(
        {
            "pickup_ts": pd.to_datetime(["2026-11-22 23:59:59", "2026-11-23 00:00:00", "2026-11-23 07:30:00"]),
            "PULocationID": [264.0, np.nan, 132.0],
            "DOLocationID": [0.0, 300.0, 1.0],
            "passenger_count": [np.nan, 9.0, 0.0],
            "trip_distance": [np.nan, 500.0, -2.0],
            "VendorID": [1.0, 2.0, 2.0],
        }
    )
    return pd.concat([frame.dropna(subset=["pickup_ts"]), edge], ignore_index=True)


def test_spark_and_numpy_forms_agree(local_spark):
    frame = request_frame()
    frame["row_id"] = np.arange(len(frame))
    sdf = local_spark.createDataFrame(frame)
    spark_out = features.with_features(sdf).orderBy("row_id").toPandas()
    batch = {c: frame[c].to_numpy() for c in frame.columns if c != "row_id"}
    batch["pickup_ts"] = frame["pickup_ts"].to_numpy().astype("datetime64[us]")
    numpy_out = features.compute_numpy(batch)
    for f in features.FEATURES:
        np.testing.assert_allclose(
            spark_out[f.name].to_numpy(dtype="float64"), numpy_out[f.name].astype("float64"), rtol=1e-9, atol=1e-12,
            err_msg=f.name,
        )


def test_categorical_features_stay_in_range():
    frame = request_frame(500)
    batch = {c: frame[c].to_numpy() for c in frame.columns}
    batch["pickup_ts"] = frame["pickup_ts"].to_numpy().astype("datetime64[us]")
    out = features.compute_numpy(batch)
    for f in features.CATEGORICAL:
        assert out[f.name].min() >= 0 and out[f.name].max() < f.cardinality, f.name


def test_known_values():
    batch = {
        "pickup_ts": np.array(["2026-11-23T08:15:00"], dtype="datetime64[us]"),  # a Monday
        "PULocationID": np.array([132.0]), "DOLocationID": np.array([236.0]),
        "passenger_count": np.array([np.nan]), "trip_distance": np.array([np.e - 1]), "VendorID": np.array([1.0]),
    }
    out = features.compute_numpy(batch)
    assert out["hour"][0] == 8 and out["dow"][0] == 0 and out["hour_of_week"][0] == 8
    assert out["is_airport"][0] == 1.0 and out["passengers"][0] == 1.0
    assert np.isclose(out["log_distance"][0], 1.0)
    assert features.spec_version().startswith("fs1-")
