"""Bring your own data, end to end: a month-format TLC file (its last day ends mid-morning) is ingested with
`lambdaml ingest`, `batch_training` runs through Airflow over its date range, the model is registered with the
test metrics of a real test split, and `lambdaml models show` lists the raw objects it trained on with the source
file's sha256. A raw partition holding a CSV fails its validate task at once, without retries."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import subprocess
import sys
import urllib.request

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch import ingest
from core.s3 import s3_client, split_uri
from core.settings import PROJECT_ROOT
from tests.e2e.training import train
from workloads.taxi import WORKLOAD, tlc
from workloads.taxi.generate import generate_day

DAYS, ROWS, LAST_DAY_UNTIL = 3, 6000, 10


def month_format_file(start: dt.date, seed: int) -> bytes:
    """A TLC file as published for 2018: 17 columns (no congestion_surcharge, no airport fee), int64 counts, the
    generator's dirty rows, and a last day that stops at 10:00."""
    table = pa.concat_tables([generate_day(start + dt.timedelta(days=i), ROWS, seed=seed) for i in range(DAYS)])
    cut = dt.datetime.combine(start + dt.timedelta(days=DAYS - 1), dt.time(LAST_DAY_UNTIL))
    keep = pc.or_kleene(pc.less(table.column(tlc.PICKUP), pa.scalar(cut, pa.timestamp("us"))),
                        pc.is_null(table.column(tlc.PICKUP)))
    table = table.filter(keep).drop(["congestion_surcharge", "Airport_fee"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def lambdaml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=PROJECT_ROOT)


def test_an_ingested_month_file_trains_a_model_that_records_its_source(stack, settings, tmp_path):
    rng = random.Random()
    start = dt.date(2012, 1, 1) + dt.timedelta(days=rng.randrange(0, 6 * 365))  # days no other test uses
    end = start + dt.timedelta(days=DAYS - 1)
    path = tmp_path / f"yellow_tripdata_{start:%Y-%m}.parquet"
    path.write_bytes(month_format_file(start, seed=rng.randrange(10_000)))
    sha = ingest.sha256_of(path.read_bytes())

    done = lambdaml("ingest", str(path))
    assert done.returncode == 0, done.stderr
    assert "1 file(s) ingested" in done.stdout

    row = train(settings, {"start_date": start.isoformat(), "end_date": end.isoformat()})
    test = row["test"]
    # test metrics on a real test split (calendar fractions left it empty: the last day ends at 10:00), and a model
    # that beats the baseline by the promotion rule's 15%
    assert test["model"]["mae_s"] <= 0.85 * test["baseline"]["mae_s"], test

    shown = lambdaml("models", "show", row["version"])
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert version["data_partitions"] == [f"raw/trips/pickup_date={start + dt.timedelta(days=i)}" for i in range(DAYS)]
    objects = version["data_objects"]
    assert {o["uri"].rsplit("/", 1)[-1] for o in objects} == {ingest.object_name(sha)}
    assert all(o["source"]["sha256"] == sha for o in objects)
    assert len(objects) == DAYS and all(len(o["sha256"]) == 64 and o["bytes"] > 0 for o in objects)
    assert sha in shown.stdout


def test_a_csv_in_a_raw_partition_fails_validation_at_once(stack, settings):
    from tests.airflow_api import AirflowAPI

    day = dt.date(2011, 1, 1) + dt.timedelta(days=random.randrange(0, 365))
    uri = f"{WORKLOAD.partition(settings.s3.uri(), day)}/copied-by-hand.csv"
    bucket, key = split_uri(uri)
    s3_client(settings).put_object(Bucket=bucket, Key=key, Body=b"VendorID,tpep_pickup_datetime\n1,2011-01-01 10:00\n")
    try:
        api = AirflowAPI(settings)
        run = api.run_dag("batch_training", {"start_date": day.isoformat(), "end_date": day.isoformat()})
        assert run["state"] == "failed"
        run_path = urllib.request.quote(run["dag_run_id"], safe="")
        tis = api.call("GET", f"/api/v2/dags/batch_training/dagRuns/{run_path}/taskInstances")["task_instances"]
        (validate,) = [t for t in tis if t["task_id"] == "validate_day"]
        assert validate["state"] == "failed" and validate["try_number"] == 1  # not retried: the same data fails again
    finally:
        moved = lambdaml("move-aside", uri)
        assert moved.returncode == 0, moved.stderr

