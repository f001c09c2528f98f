"""The benchmark's shared SQL computes the platform's features (checked through DuckDB, no Spark)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads.taxi.contract import LABEL
from bench import data
from bench.preprocess_engines import SOURCE, feature_sql
from workloads.taxi import features
from workloads.taxi.generate import generate_day


def test_shared_sql_matches_numpy_features():
    # Dirty rows exercise unknown and missing zones and negative durations; one day of each weekday.
    days = [dt.date(2026, 12, 28) + dt.timedelta(days=i) for i in range(7)]  # crosses into 2027
    raw = pa.concat_tables([generate_day(d, 30, seed=11, dirty_share=0.2) for d in days])
    raw = raw.filter(pc.is_valid(raw.column("tpep_pickup_datetime")))
    train_end, val_end = dt.datetime(2027, 1, 1), dt.datetime(2027, 1, 2, 12)

    con = duckdb.connect()
    con.register(SOURCE, raw)
    out = con.sql(feature_sql(train_end, val_end)).to_arrow_table()
    batch = data.requests(raw)
    expected = features.compute_numpy(batch)

    assert out.num_rows == raw.num_rows > 150
    for name in ("hour", "dow", "hour_of_week", "pu_zone", "do_zone", "pu_do_cross", "passengers", "is_airport",
                 "is_weekend"):
        np.testing.assert_array_equal(out.column(name).to_numpy(), expected[name], err_msg=name)
    np.testing.assert_allclose(out.column("log_distance").to_numpy(), expected["log_distance"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out.column(LABEL).to_numpy(), batch[LABEL])
    assert set(out.column("dow").to_pylist()) == set(range(7))

    pickup = raw.column("tpep_pickup_datetime").to_numpy(zero_copy_only=False)
    split = np.where(pickup < np.datetime64(train_end), "train",
                     np.where(pickup < np.datetime64(val_end), "val", "test"))
    np.testing.assert_array_equal(np.asarray(out.column("split").to_pylist()), split)
