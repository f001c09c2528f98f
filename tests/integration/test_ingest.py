"""`lambdaml ingest` on the real stack: real-format TLC files of every variant into the real S3 (and MySQL's
manifest), a second ingest that writes nothing, bad files refused whole at the door, and validation that names
what it cannot read in a raw partition."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import sys
import uuid

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import bindparam, text

from batch import ingest, validate
from core import lake, raw
from core.db import engine
from core.s3 import s3_client, split_uri
from core.settings import PROJECT_ROOT
from workloads.taxi import WORKLOAD as tlc_workload
from workloads.taxi import tlc
from workloads.taxi.generate import generate_day

LAMBDAML = [sys.executable, "-m", "core.cli"]
REPO = str(PROJECT_ROOT)


def month_file(year: int, month: int, days: int, rows_per_day: int, seed: int, *, last_day_until: int = 10,
               columns: dict[str, str] | None = None, counts: pa.DataType = pa.int64(),
               drop: tuple[str, ...] = ()) -> pa.Table:
    """A month's file as the TLC publishes it: generated trips (with their dirt), a last day that stops at
    ``last_day_until`` o'clock, two rows dated outside the month, plus the real dirt the generator lacks: zero
    distance and zero passengers, zones 264/265, a meter left running. ``columns`` renames (variant spellings);
    ``drop`` removes columns a variant does not have yet."""
    import pyarrow.compute as pc

    first = dt.date(year, month, 1)
    table = pa.concat_tables([generate_day(first + dt.timedelta(days=i), rows_per_day, seed=seed, dirty_share=0.0)
                              for i in range(days)])
    last = dt.datetime.combine(first + dt.timedelta(days=days - 1), dt.time(last_day_until))
    table = table.filter(pc.less(table.column(tlc.PICKUP), pa.scalar(last, pa.timestamp("us"))))
    rows = table.to_pylist()  # day by day, the first day first
    n = len(rows)
    rows[5]["trip_distance"] = 0.0
    rows[6]["passenger_count"] = 0
    rows[7]["PULocationID"], rows[8]["DOLocationID"] = 264, 265
    rows[9][tlc.DROPOFF] = rows[9][tlc.PICKUP] + dt.timedelta(hours=5)
    rows[10][tlc.PICKUP] = None
    for k, when in enumerate((dt.datetime(year - 1, 12, 31, 23, 50), dt.datetime(2009, 1, 1, 0, 0))):
        extra = dict(rows[20 + k])
        extra[tlc.PICKUP], extra[tlc.DROPOFF] = when, when + dt.timedelta(minutes=9)
        rows.append(extra)
    assert len(rows) == n + 2
    out = pa.Table.from_pylist(rows, schema=tlc.RAW_SCHEMA)
    cast = {"passenger_count": counts, "RatecodeID": counts, "VendorID": pa.int64(), "PULocationID": pa.int64(),
            "DOLocationID": pa.int64()}
    out = pa.table({name: out.column(name).cast(cast.get(name, out.column(name).type)) for name in out.column_names})
    out = out.drop([c for c in drop if c in out.column_names])
    if columns:
        out = out.rename_columns([columns.get(c, c) for c in out.column_names])
    return out


def to_parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def to_csv_gz(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    return gzip.compress(buf.getvalue())


def listing(settings, root: str) -> dict[str, tuple[str, int]]:
    """key -> (ETag, size) of every object under ``root``."""
    bucket, prefix = split_uri(root)
    client = s3_client(settings)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["ETag"], obj["Size"])
    return out


def manifest_rows(settings, shas: list[str]) -> dict[str, dict]:
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text("SELECT * FROM ingest_manifest WHERE workload = 'taxi' AND sha256 IN :s")
                                .bindparams(bindparam("s", expanding=True)), {"s": shas}).mappings().all()
    finally:
        eng.dispose()
    return {r["sha256"]: dict(r) for r in rows}


@pytest.fixture(scope="module")
def variants(tmp_path_factory, stack, settings):
    """One file of each variant, in its real format; the 2025 one is read from an s3:// URI."""
    seed = uuid.uuid4().int % 10_000  # new bytes each run: the manifest is keyed by sha256
    folder = tmp_path_factory.mktemp("tlc")
    files = {
        "yellow_tripdata_2018-01.parquet": to_parquet(month_file(2018, 1, 3, 300, seed, drop=(
            "congestion_surcharge", "Airport_fee"))),
        "yellow_tripdata_2019-02.csv.gz": to_csv_gz(month_file(2019, 2, 2, 300, seed + 1, counts=pa.float64(),
                                                               drop=("Airport_fee",))),
        "yellow_tripdata_2022-03.parquet": to_parquet(month_file(2022, 3, 2, 300, seed + 2, counts=pa.float64(),
                                                                 columns={"Airport_fee": "airport_fee"})),
        "yellow_tripdata_2023-04.parquet": to_parquet(month_file(2023, 4, 2, 300, seed + 3)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    cbd = month_file(2025, 5, 2, 300, seed + 4)
    cbd = cbd.append_column("cbd_congestion_fee", pa.array([0.75] * cbd.num_rows))
    root = settings.s3.uri("it", f"ingest-{seed}")
    incoming = f"{root}/incoming/yellow_tripdata_2025-05.parquet"
    bucket, key = split_uri(incoming)
    s3_client(settings).put_object(Bucket=bucket, Key=key, Body=to_parquet(cbd))
    files["yellow_tripdata_2025-05.parquet"] = to_parquet(cbd)
    lake_root = f"{root}/lake"
    results = ingest.ingest(settings, [str(folder), incoming.replace("s3a://", "s3://")], lake_root=lake_root,
                            record=ingest.mysql_recorder(settings)[0])
    return {"folder": folder, "files": files, "root": lake_root, "incoming": incoming, "results": results}


def test_every_variant_is_ingested_into_day_partitions(variants, settings):
    results = {r.name.rsplit("/", 1)[-1]: r for r in variants["results"]}
    assert set(results) == set(variants["files"])
    assert all(r.status == "ingested" for r in results.values()), [(r.name, r.error) for r in results.values()]
    assert results["yellow_tripdata_2018-01.parquet"].variant == "2011+ (location ids), int64 counts"
    assert results["yellow_tripdata_2019-02.csv.gz"].variant == "2019+ (congestion_surcharge), CSV.GZ"
    assert results["yellow_tripdata_2022-03.parquet"].variant == "2021+ (airport_fee), double counts"
    assert results["yellow_tripdata_2023-04.parquet"].variant == "2021+ (Airport_fee), int64 counts"
    assert results["yellow_tripdata_2025-05.parquet"].variant == "2025+ (cbd_congestion_fee), int64 counts"
    objects = listing(settings, variants["root"])
    for name, r in results.items():
        expected_rows = pq.ParquetFile(pa.BufferReader(variants["files"][name])).metadata.num_rows if name.endswith(
            ".parquet") else pcsv.read_csv(io.BytesIO(gzip.decompress(variants["files"][name]))).num_rows
        assert r.rows == expected_rows
        assert r.outside_month == 2  # the day before the month and a row from 2009, each in its own day
        assert r.no_event_time == 1  # it went to the first day of the month, where validation quarantines it
        assert r.days == len(r.objects)
        year, month = int(name[16:20]), int(name[21:23])
        days = sorted(o["day"] for o in r.objects)
        assert f"{year - 1}-12-31" in days and "2009-01-01" in days
        assert days[-1].startswith(f"{year}-{month:02d}")
        for obj in r.objects:
            _, key = split_uri(obj["uri"])
            assert key.endswith(f"/pickup_date={obj['day']}/ingest-{r.sha256[:16]}.parquet")
            assert objects[key][1] == obj["bytes"]
            fs, path = lake.filesystem(settings, obj["uri"])
            table = pq.read_table(path, filesystem=fs)
            assert table.schema.equals(tlc.RAW_SCHEMA) and table.num_rows == obj["rows"]
            meta = table.schema.metadata
            assert meta[raw.SOURCE_SHA256_KEY].decode() == r.sha256
        assert sum(o["rows"] for o in r.objects) == r.rows
    assert not [k for k in objects if "/staging/" in k]  # the staging prefix is gone after the commit
    rows = manifest_rows(settings, [r.sha256 for r in results.values()])
    assert set(rows) == {r.sha256 for r in results.values()}
    for r in results.values():
        row = rows[r.sha256]
        assert row["row_count"] == r.rows and row["days"] == r.days and row["rows_outside_month"] == 2
        assert json.loads(row["objects"]) == r.objects
        _, key = split_uri(row["manifest_uri"])
        manifest = json.loads(s3_client(settings).get_object(Bucket=split_uri(row["manifest_uri"])[0], Key=key)
                              ["Body"].read())
        assert manifest["sha256"] == r.sha256 and manifest["objects"] == r.objects


def test_ingesting_the_same_files_again_writes_nothing(variants, settings):
    before = listing(settings, variants["root"])
    proc = subprocess.run([*LAMBDAML, "ingest", str(variants["folder"]), variants["incoming"].replace("s3a", "s3"),
                           "--lake-root", variants["root"]], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "0 file(s) ingested (0 rows), 5 already present: nothing written for those" in proc.stdout
    assert proc.stdout.count(" yes ") == 5
    assert listing(settings, variants["root"]) == before  # same keys, same ETags, nothing new


def test_validation_quarantines_the_real_dirt_and_records_the_objects(variants, spark, settings):
    r = next(r for r in variants["results"] if r.name.endswith("2018-01.parquet"))
    day = dt.date(2018, 1, 1)
    result = validate.run(spark, settings, day, lake_root=variants["root"])
    assert result.ok
    rows_that_day = next(o["rows"] for o in r.objects if o["day"] == day.isoformat())
    assert result.rows_in == rows_that_day
    assert {"zero_distance", "unknown_zone", "duration_too_long", "null_required_field"} <= set(result.by_rule)
    (obj,) = [o for o in r.objects if o["day"] == day.isoformat()]
    assert [o.record() for o in result.objects] == [{"uri": obj["uri"], "bytes": obj["bytes"], "sha256": obj["sha256"],
                                                     "source": {"name": r.name, "sha256": r.sha256}}]
    valid = spark.read.parquet(tlc_workload.partition(variants["root"], day, "validated"))
    assert valid.where("passenger_count = 0").count() == 1  # zero passengers: accepted, on purpose


@pytest.mark.parametrize(("name", "make", "says"), [
    ("no_dropoff.parquet", lambda t: to_parquet(t.drop(["tpep_dropoff_datetime"])),
     "missing column(s) tpep_dropoff_datetime"),
    ("no_zone.csv.gz", lambda t: to_csv_gz(t.drop(["PULocationID"])), "missing column(s) PULocationID"),
    ("cut.parquet", lambda t: to_parquet(t)[: len(to_parquet(t)) // 2], "corrupt Parquet file"),
    ("flipped.parquet", lambda t: b"PAR1" + bytes(b ^ 0x5A for b in to_parquet(t)[4:]), "corrupt Parquet file"),
    ("photo.csv", lambda t: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a table"),
    ("notes.csv", lambda t: b"these are my notes\nnot trips\n", "missing column"),
])
def test_a_bad_file_is_refused_whole_naming_the_problem(name, make, says, tmp_path, settings, stack, unique):
    table = month_file(2018, 6, 1, 200, seed=hash(unique) % 1000)
    path = tmp_path / name
    path.write_bytes(make(table))
    root = settings.s3.uri("it", f"ingest-bad-{unique}")
    proc = subprocess.run([*LAMBDAML, "ingest", str(path), "--lake-root", root], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 1
    assert f"refused: {path}: " in proc.stderr and says in proc.stderr, proc.stderr
    assert listing(settings, root) == {}  # nothing in raw/, manifests/ or staging/
    sha = ingest.sha256_of(path.read_bytes())
    assert manifest_rows(settings, [sha]) == {}


def test_validate_names_a_csv_or_an_unreadable_file_in_a_partition_and_how_to_move_it_aside(
        spark, settings, stack, unique, tmp_path):
    root = settings.s3.uri("it", f"ingest-stray-{unique}")
    day = dt.date(2018, 7, 1)
    good = tmp_path / "yellow_tripdata_2018-07.parquet"
    good.write_bytes(to_parquet(month_file(2018, 7, 1, 200, seed=3)))
    assert ingest.ingest(settings, [str(good)], lake_root=root)[0].status == "ingested"
    client = s3_client(settings)
    bucket, prefix = split_uri(tlc_workload.partition(root, day))
    for stray, body in ((f"{prefix}/by-hand.csv", b"VendorID,tpep_pickup_datetime\n1,2018-07-01 10:00:00\n"),
                        (f"{prefix}/broken.parquet", b"PAR1 not really")):
        client.put_object(Bucket=bucket, Key=stray, Body=body)
        uri = f"s3a://{bucket}/{stray}"
        with pytest.raises(lake.DataError) as exc:
            validate.run(spark, settings, day, lake_root=root)
        assert uri in str(exc.value) and f"lambdaml move-aside {uri}" in str(exc.value)
        proc = subprocess.run([*LAMBDAML, "move-aside", uri, "--lake-root", root], capture_output=True, text=True,
                              timeout=120, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert f"{root}/rejected/raw/trips/pickup_date={day}/" in proc.stdout
    result = validate.run(spark, settings, day, lake_root=root)
    assert result.ok and len(result.objects) == 1
    rejected = [k for k in listing(settings, root) if "/rejected/" in k]
    assert sorted(k.rsplit("/", 1)[-1] for k in rejected) == ["broken.parquet", "by-hand.csv"]


def test_preprocess_refuses_splits_below_the_minimum_before_tuning(variants, spark, settings):
    from batch import preprocess
    from core.settings import BatchSettings

    days = [dt.date(2023, 4, 1), dt.date(2023, 4, 2)]  # the last day stops at 10:00
    for day in days:
        validate.run(spark, settings, day, lake_root=variants["root"])
    strict = settings.model_copy(update={"batch": BatchSettings(min_split_rows=10_000)})
    with pytest.raises(preprocess.SplitTooSmall, match=r"train \d+, val \d+, test \d+ rows"):
        preprocess.run(spark, strict, days, dataset="it-small", lake_root=variants["root"])
    # Calendar fractions of the two days would have cut the test split at 2023-04-02 16:48: no trips at all.
    ok = preprocess.run(spark, settings, days, dataset="it-small", lake_root=variants["root"])
    total = sum(ok.rows.values())
    assert abs(ok.rows["test"] - 0.15 * total) <= 0.02 * total + 2, ok.rows
    assert ok.cuts[1] < "2023-04-02 10:00"
