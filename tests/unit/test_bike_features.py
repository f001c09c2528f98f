"""The bike workload's two forms agree: every feature, the label and every validation rule give the same values in
Spark and in numpy/pyarrow on the same rows (generated ones, dirty ones and edge cases)."""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core import raw
from workloads.bike import WORKLOAD, features, schema
from workloads.bike.generate import generate_day

DAY = dt.date(2024, 6, 9)  # a Sunday


def raw_rows(rows: int = 3000, dirty_share: float = 0.2) -> pa.Table:
    """Generated rides (dirty ones included) plus edge cases, in RAW_SCHEMA."""
    generated = generate_day(DAY, rows, seed=5, dirty_share=dirty_share)
    ts = lambda *a: dt.datetime(*a)  # noqa: E731
    edge = pa.Table.from_pylist([
        # Sunday's last millisecond and Monday's first; a station id with non-ASCII text; a blank one.
        {"ride_id": "E1", "rideable_type": "docked_bike", "started_at": ts(2024, 6, 9, 23, 59, 59, 999000),
         "ended_at": ts(2024, 6, 10, 0, 40), "start_station_id": "Café 1", "member_casual": "casual",
         "start_lat": float("nan"), "start_lng": -73.9},
        {"ride_id": "E2", "rideable_type": "electric_bike", "started_at": ts(2024, 6, 10, 0, 0),
         "ended_at": ts(2024, 6, 10, 0, 0, 0, 500), "start_station_id": "", "member_casual": None,
         "start_lat": None, "start_lng": 0.0},
        {"ride_id": "E3", "rideable_type": "", "started_at": ts(2024, 6, 9, 7, 30),
         "ended_at": ts(2024, 6, 10, 7, 30), "start_station_id": "HB101", "member_casual": "member",
         "start_lat": 40.7, "start_lng": None},
        {"ride_id": "E4", "rideable_type": None, "started_at": ts(2024, 6, 9, 7, 30),
         "ended_at": ts(2024, 6, 10, 7, 30, 0, 1), "start_station_id": "6140.05", "member_casual": "Subscriber",
         "start_lat": 41.5, "start_lng": -73.9},
    ], schema=schema.RAW_SCHEMA)
    return pa.concat_tables([generated, edge])


def numpy_batch(table: pa.Table) -> dict[str, np.ndarray]:
    """The request fields as the service holds them: times as datetime64[us], text as object arrays."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in features.INPUTS}


def test_spark_and_numpy_forms_agree(local_spark):
    table = raw_rows()
    table = table.filter(table.column("started_at").is_valid())
    table = table.append_column("row_id", pa.array(np.arange(len(table))))
    sdf = local_spark.createDataFrame(table.select(["row_id", *features.INPUTS]))
    spark_out = features.with_features(sdf).orderBy("row_id").toPandas()
    numpy_out = features.compute_numpy(numpy_batch(table))
    assert list(numpy_out) == list(features.FEATURE_NAMES)
    for f in features.FEATURES:
        np.testing.assert_array_equal(spark_out[f.name].to_numpy(dtype="float64"),
                                      numpy_out[f.name].astype("float64"), err_msg=f.name)


def test_the_label_forms_agree(local_spark):
    from pyspark.sql import functions as F

    table = generate_day(DAY, 2000, seed=2, dirty_share=0.1)
    table = table.filter(table.column("ended_at").is_valid()).filter(table.column("started_at").is_valid())
    sdf = local_spark.createDataFrame(table)
    duration = F.timestamp_diff("MICROSECOND", F.col("started_at"), F.col("ended_at")) / F.lit(1e6)
    spark_y = [r[0] for r in sdf.select(schema.overtime_spark(duration, F.col("member_casual"))).collect()]
    duration_s = (table.column("ended_at").to_numpy().astype("int64")
                  - table.column("started_at").to_numpy().astype("int64")) / 1e6
    numpy_y = schema.overtime_numpy(duration_s, table.column("member_casual").to_numpy(zero_copy_only=False))
    assert spark_y == numpy_y.tolist() and 0 < sum(spark_y) < len(spark_y)


def test_the_rule_forms_agree(local_spark):
    """Each rule on its own (not only the first failed), nulls and NaN included."""
    from pyspark.sql import functions as F

    table = raw_rows(2000, dirty_share=0.4)
    sdf = local_spark.createDataFrame(table.append_column("row_id", pa.array(np.arange(len(table)))))
    checks = [F.coalesce(bad, F.lit(False)).alias(name) for name, bad in schema.rules_spark(DAY)]
    spark_out = sdf.select("row_id", *checks).orderBy("row_id").toPandas()
    for rule in schema.RULES:
        arrow = pc.fill_null(rule.arrow(table, DAY), False).to_numpy(zero_copy_only=False).astype(bool)
        np.testing.assert_array_equal(spark_out[rule.name].to_numpy(dtype=bool), arrow, err_msg=rule.name)
        assert arrow.any(), f"no row fails {rule.name}: the test checks nothing"


def test_the_platform_reads_a_bike_partition_in_its_schema(local_spark):
    """``core.raw.normalize_spark`` knows every type of RAW_SCHEMA and gives what ``schema.normalize`` gives."""
    table = generate_day(DAY, 300, seed=4, dirty_share=0.1)
    out = raw.normalize_spark(local_spark.createDataFrame(table.drop(["end_lat", "end_lng"])), WORKLOAD)
    assert out.columns == schema.RAW_SCHEMA.names
    expected = schema.normalize(table.drop(["end_lat", "end_lng"]))
    got = out.toPandas()
    assert got["start_station_id"].tolist() == expected.column("start_station_id").to_pylist()
    assert got["end_lat"].isna().all() and got["ride_id"].tolist() == expected.column("ride_id").to_pylist()


def test_categorical_features_stay_in_range():
    table = raw_rows(500)
    out = features.compute_numpy(numpy_batch(table.filter(pc.is_valid(table.column("started_at")))))
    for f in features.CATEGORICAL:
        assert out[f.name].min() >= 0 and out[f.name].max() < f.cardinality, f.name


def test_known_values():
    batch = {
        "started_at": np.array(["2024-06-10T08:15:00", "2024-06-09T13:00:00", "2024-06-09T13:00:00"],
                               dtype="datetime64[us]"),  # a Monday, a Sunday
        "start_station_id": np.array(["HB101", None, ""], dtype=object),
        "rideable_type": np.array(["electric_bike", "docked_bike", "scooter"], dtype=object),
        "member_casual": np.array(["member", "casual", None], dtype=object),
    }
    out = features.compute_numpy(batch)
    assert out["hour"].tolist() == [8, 13, 13] and out["dow"].tolist() == [0, 6, 6]
    assert out["hour_of_week"].tolist() == [8, 6 * 24 + 13, 6 * 24 + 13]
    assert out["is_weekend"].tolist() == [0.0, 1.0, 1.0]
    assert out["start_station"].tolist() == [1 + zlib.crc32(b"HB101") % (features.N_STATION_SLOTS - 1), 0, 0]
    assert out["rideable"].tolist() == [2, 3, 0] and out["rider"].tolist() == [1, 2, 0]
    assert out["is_member"].tolist() == [1.0, 0.0, 0.0] and out["is_electric"].tolist() == [1.0, 0.0, 0.0]
    assert out["station_hour"][0] == (out["start_station"][0] * 24 + 8) % features.CROSS_BUCKETS
    assert not [k for k in batch if k.startswith("_")]  # the caller's dict is left as it was (no memo keys)
    assert features.spec_version().startswith("bk1-")


@pytest.mark.parametrize("ids", [np.array(["6140.05", "HB101"]), np.array(["6140.05", "HB101"], dtype=object)])
def test_station_ids_hash_alike_from_unicode_or_object_arrays(ids):
    out = features.compute_numpy({"started_at": np.array(["2024-06-10T08:00", "2024-06-10T08:00"],
                                                         dtype="datetime64[us]"),
                                  "start_station_id": ids, "rideable_type": np.array(["classic_bike"] * 2),
                                  "member_casual": np.array(["member"] * 2)})
    assert out["start_station"].tolist() == [features.station_slot("6140.05"), features.station_slot("HB101")]
    assert 0 not in out["start_station"].tolist()
