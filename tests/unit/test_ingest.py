"""`lambdaml ingest`, its pure parts: reading any known variant, refusing what is not a trip table, the day
split and the plan that makes a second ingest of the same bytes a no-op."""

from __future__ import annotations

import datetime as dt
import gzip
import io

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from batch import ingest
from workloads.taxi import tlc

TAXI = ingest.workload("taxi")
COLUMNS_2018 = ["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
                "RatecodeID", "store_and_fwd_flag", "PULocationID", "DOLocationID", "payment_type", "fare_amount",
                "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge", "total_amount"]


def trips(pickups: list[dt.datetime | None], counts: pa.DataType = pa.int64(), extra: tuple[str, ...] = ()) -> pa.Table:
    """A TLC-style table: the 17 columns of 2018, plus ``extra`` (later variants' columns)."""
    n = len(pickups)
    cols = {
        "VendorID": pa.array([2] * n, pa.int64()),
        "tpep_pickup_datetime": pa.array(pickups, pa.timestamp("us")),
        "tpep_dropoff_datetime": pa.array([p + dt.timedelta(minutes=12) if p else None for p in pickups],
                                          pa.timestamp("us")),
        "passenger_count": pa.array([1] * n, counts),
        "trip_distance": pa.array([2.5] * n),
        "RatecodeID": pa.array([1] * n, counts),
        "store_and_fwd_flag": pa.array(["N"] * n),
        "PULocationID": pa.array([161] * n, pa.int64()),
        "DOLocationID": pa.array([236] * n, pa.int64()),
        "payment_type": pa.array([1] * n, pa.int64()),
        **{c: pa.array([1.0] * n) for c in COLUMNS_2018[10:]},
        **{c: pa.array([0.5] * n) for c in extra},
    }
    return pa.table(cols)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def csv_bytes(table: pa.Table, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


JAN = [dt.datetime(2018, 1, 1, 0, 5), dt.datetime(2018, 1, 2, 8, 0), dt.datetime(2018, 1, 31, 9, 30)]


@pytest.mark.parametrize(("extra", "counts", "expected"), [
    ((), pa.int64(), "2011+ (location ids), int64 counts"),
    (("congestion_surcharge",), pa.float64(), "2019+ (congestion_surcharge), double counts"),
    (("congestion_surcharge", "airport_fee"), pa.float64(), "2021+ (airport_fee), double counts"),
    (("congestion_surcharge", "Airport_fee"), pa.int64(), "2021+ (Airport_fee), int64 counts"),
    (("congestion_surcharge", "Airport_fee", "cbd_congestion_fee"), pa.int64(),
     "2025+ (cbd_congestion_fee), int64 counts"),
])
def test_every_known_variant_is_named_and_reads_as_the_raw_schema(extra, counts, expected):
    table = trips(JAN, counts, extra)
    assert tlc.variant(table.schema) == expected
    for data in (parquet_bytes(table), csv_bytes(table), csv_bytes(table, gz=True)):
        schema, out = ingest.read_table("f", data, TAXI)
        assert out.schema == tlc.RAW_SCHEMA and out.num_rows == 3
        assert out.column("passenger_count").to_pylist() == [1, 1, 1]
        if "airport_fee" in extra or "Airport_fee" in extra:
            assert out.column("Airport_fee").to_pylist() == [0.5] * 3


def test_a_csv_export_of_the_open_data_portal_reads_its_timestamps():
    text = ",".join(COLUMNS_2018) + "\n" + "2,01/31/2018 11:59:59 PM,02/01/2018 12:10:00 AM,1,2.5,1,N,161,236,1," \
        + ",".join(["1.0"] * 7) + "\n"
    _, out = ingest.read_table("export.csv", text.encode(), TAXI)
    assert out.column(tlc.PICKUP).to_pylist() == [dt.datetime(2018, 1, 31, 23, 59, 59)]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"PAR1 then nothing a Parquet reader could use", "corrupt Parquet file"),
    (b"\x1f\x8b\x08\x00 cut gzip", "corrupt gzip file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a table"),
    (b'{"trips": [1, 2, 3]}\n', "missing column"),
    (b"a,b\n1,2\n3\n", "not a table"),
])
def test_what_is_not_a_trip_table_is_refused_naming_the_file(data, message):
    with pytest.raises(ingest.IngestError, match=message) as exc:
        ingest.read_table("s3://bucket/in/yellow.bin", data, TAXI)
    assert str(exc.value).startswith("s3://bucket/in/yellow.bin: ")


def test_a_file_named_parquet_that_is_not_is_corrupt():
    with pytest.raises(ingest.IngestError, match="corrupt Parquet file.*PAR1"):
        ingest.read_table("yellow_2018-01.parquet", csv_bytes(trips(JAN)), TAXI)


def test_a_missing_required_column_is_named():
    table = trips(JAN).drop(["tpep_dropoff_datetime"])
    for data in (parquet_bytes(table), csv_bytes(table, gz=True)):
        with pytest.raises(ingest.IngestError, match="missing column.*tpep_dropoff_datetime"):
            ingest.read_table("f.parquet", data, TAXI)


def test_reading_a_file_then_exiting_at_once_exits_cleanly(tmp_path):
    """Arrow must not hold the file's bytes past the read: a process that reads a file, refuses it and exits
    at once aborted about every other time when pyarrow's dataset scan released them on its own thread."""
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    path = tmp_path / "no_dropoff.parquet"
    path.write_bytes(parquet_bytes(trips(JAN * 50).drop(["tpep_dropoff_datetime"])))
    script = ("import sys; from batch import ingest\n"
              "try:\n    ingest.read_table('f.parquet', open(sys.argv[1], 'rb').read(), ingest.workload('taxi'))\n"
              "except ingest.IngestError:\n    pass\n")
    codes = [subprocess.run([sys.executable, "-c", script, str(path)], cwd=PROJECT_ROOT, capture_output=True,
                            timeout=120).returncode for _ in range(12)]
    assert codes == [0] * 12


def test_a_pre_2016_coordinate_file_says_what_it_is():
    table = trips(JAN).drop(["PULocationID", "DOLocationID"]).append_column("pickup_longitude", pa.array([-73.9] * 3))
    with pytest.raises(ingest.IngestError, match="coordinates instead of zones"):
        ingest.read_table("f.parquet", parquet_bytes(table), TAXI)


def test_an_empty_table_is_refused():
    with pytest.raises(ingest.IngestError, match="no rows"):
        ingest.read_table("f.parquet", parquet_bytes(trips([])), TAXI)


def test_rows_split_by_day_outside_the_month_and_without_a_time_are_counted():
    pickups = [dt.datetime(2018, 1, 3, 10), dt.datetime(2018, 1, 1, 0, 1), dt.datetime(2017, 12, 31, 23, 59),
               None, dt.datetime(2018, 1, 3, 9), dt.datetime(2009, 1, 1, 0, 0), dt.datetime(2018, 1, 31, 9, 30)]
    split = ingest.split_by_day(tlc.normalize(trips(pickups)), tlc.PICKUP)
    assert split.month == (2018, 1)
    assert split.outside_month == 2 and split.no_event_time == 1
    assert sorted(split.parts) == [dt.date(2009, 1, 1), dt.date(2017, 12, 31), dt.date(2018, 1, 1),
                                   dt.date(2018, 1, 3), dt.date(2018, 1, 31)]
    # the row without a pickup time goes to the file's first day, where validation quarantines it
    assert split.parts[dt.date(2018, 1, 1)].column(tlc.PICKUP).to_pylist() == [dt.datetime(2018, 1, 1, 0, 1), None]
    # file order within a day
    assert split.parts[dt.date(2018, 1, 3)].column(tlc.PICKUP).to_pylist() == [dt.datetime(2018, 1, 3, 10),
                                                                               dt.datetime(2018, 1, 3, 9)]
    assert split.rows == len(pickups)


def test_a_file_with_no_pickup_time_at_all_is_refused():
    with pytest.raises(ingest.IngestError, match="no row has a tpep_pickup_datetime"):
        ingest.split_by_day(tlc.normalize(trips([None, None])), tlc.PICKUP, "f.parquet")


def test_the_plan_ingests_new_bytes_once():
    files = [("a.parquet", "s1"), ("b.csv.gz", "s2"), ("copy-of-a.parquet", "s1"), ("c.parquet", "s3")]
    decisions = ingest.plan(files, present={"s2"})
    assert [(d.name, d.action, d.same_as) for d in decisions] == [
        ("a.parquet", "ingest", None), ("b.csv.gz", "present", None), ("copy-of-a.parquet", "repeated", "a.parquet"),
        ("c.parquet", "ingest", None)]
    again = ingest.plan(files, present={"s1", "s2", "s3"})
    assert [d.action for d in again] == ["present"] * 4


def test_names_in_the_lake_come_from_the_content_and_the_workload():
    sha = "ab" * 32
    assert ingest.object_name(sha) == "ingest-abababababababab.parquet"
    assert TAXI.partition("s3a://lake", dt.date(2018, 1, 2)) == "s3a://lake/raw/trips/pickup_date=2018-01-02"
    assert ingest.manifest_uri("s3a://lake", TAXI, sha) == f"s3a://lake/manifests/ingest/taxi/{sha}.json"
    with pytest.raises(ingest.IngestError, match="no such workload"):
        ingest.workload("boat")
