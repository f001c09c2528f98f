"""Real TLC files vary by month; normalize() must take them unchanged."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from core import raw
from workloads.taxi import WORKLOAD, tlc


def real_style_file(fee_column: str, passenger_type: pa.DataType) -> pa.Table:
    ts = pa.array([dt.datetime(2024, 1, 1, 0, 5), dt.datetime(2024, 1, 1, 0, 7)], pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "VendorID": pa.array([2, 1], pa.int64()),
            "tpep_pickup_datetime": ts,
            "tpep_dropoff_datetime": ts,
            "passenger_count": pa.array([None, 2], passenger_type),
            "trip_distance": pa.array([1.2, 3.4]),
            "RatecodeID": pa.array([1.0, None]),
            "store_and_fwd_flag": pa.array(["N", None]),
            "PULocationID": pa.array([161, 237], pa.int64()),
            "DOLocationID": pa.array([236, 264], pa.int64()),
            "payment_type": pa.array([1, 0], pa.int64()),
            "fare_amount": pa.array([10.0, 12.5]),
            "total_amount": pa.array([14.0, 16.5]),
            fee_column: pa.array([0.0, 1.75]),
            "cbd_congestion_fee": pa.array([0.75, 0.0]),
        }
    )


@pytest.mark.parametrize("fee_column", ["airport_fee", "Airport_fee"])
@pytest.mark.parametrize("passenger_type", [pa.int64(), pa.float64()])
def test_real_quirks_normalise_to_the_raw_schema(fee_column, passenger_type):
    out = tlc.normalize(real_style_file(fee_column, passenger_type))
    assert out.schema == tlc.RAW_SCHEMA
    assert out.column("Airport_fee").to_pylist() == [0.0, 1.75]
    assert out.column("passenger_count").to_pylist() == [None, 2]
    assert out.column("RatecodeID").to_pylist() == [1, None]
    assert out.column("PULocationID").type == pa.int32()
    assert out.column("extra").null_count == 2  # absent in the file, present as nulls


def test_missing_required_column_is_named():
    bad = real_style_file("airport_fee", pa.int64()).drop(["PULocationID"])
    with pytest.raises(ValueError, match="PULocationID"):
        tlc.normalize(bad)


@pytest.mark.parametrize("fee_column", ["airport_fee", "Airport_fee"])
def test_spark_normalisation_matches(local_spark, fee_column):
    table = real_style_file(fee_column, pa.float64())
    df = local_spark.createDataFrame(table.to_pandas())
    out = raw.normalize_spark(df, WORKLOAD)
    assert out.columns == tlc.RAW_SCHEMA.names
    rows = out.orderBy("PULocationID").collect()
    assert [r["Airport_fee"] for r in rows] == [0.0, 1.75]
    assert [r["passenger_count"] for r in rows] == [None, 2]
    assert dict(out.dtypes)["PULocationID"] == "int"


def test_a_partition_mixing_file_variants_reads_as_one_schema(local_spark, tmp_path):
    """Late data may arrive in another month's variant than the files already in the partition."""
    import pyarrow.parquet as pq

    from core.settings import Settings

    part = tmp_path / "raw" / "trips" / "pickup_date=2024-01-01"
    part.mkdir(parents=True)
    pq.write_table(real_style_file("airport_fee", pa.int64()), part / "part-a.parquet")
    pq.write_table(real_style_file("Airport_fee", pa.float64()), part / "part-b.parquet")
    out = raw.read_partition_spark(local_spark, Settings(), f"file://{part}", WORKLOAD)
    assert out.columns == tlc.RAW_SCHEMA.names
    rows = out.collect()
    assert len(rows) == 4
    assert sorted(r["Airport_fee"] for r in rows) == [0.0, 0.0, 1.75, 1.75]
    assert sorted((r["passenger_count"] for r in rows), key=lambda v: (v is None, v)) == [2, 2, None, None]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_day_without_raw_data_says_so_and_what_to_do(tmp_path, make):
    """A scheduled run over days nobody loaded yet must say that, not fail deep inside the filesystem."""
    from core.settings import Settings

    part = tmp_path / "raw" / "trips" / "pickup_date=2024-01-02"
    if make == "empty":
        part.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no raw data for this day: no Parquet files under .*"
                                                r"pickup_date=2024-01-02.*end_date"):
        raw.read_partition_spark(None, Settings(), f"file://{part}", WORKLOAD)
