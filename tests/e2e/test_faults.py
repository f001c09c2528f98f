"""Faults and bad input in the batch and serving layers, on the real stack. Each test reconciles counts from the
source (Kafka, raw objects on S3) to the sink (MySQL rows, validated/quarantined partitions, feature splits).

| fault or bad input | expected | reconciled |
|---|---|---|
| MariaDB stopped while `serving_sync` runs through Airflow | the task fails with a clear error; Airflow's retry finishes it once MariaDB is back | MySQL rows = distinct trips sent to Kafka, the last delivery of each, none twice |
| S3 stopped for 30 s during the `preprocess` step | the step waits (S3A retries) and completes once S3 is back | raw objects (keys, ETags, sizes) unchanged; split rows = validated rows |
| S3 stopped for longer than the step's S3A retry budget | the try fails with an error naming S3 and what to do; the next try succeeds | raw objects unchanged; split rows = validated rows |
| raw partition with a file of the wrong schema, garbage bytes or an empty file | `validate_day` fails with an error naming the file; nothing written | raw objects unchanged |
| raw file with wrongly typed columns (strings where numbers belong) | unparseable values go to quarantine (`null_required_field`), the rest is validated | rows in = valid + quarantined |
| reprocessing past days from immutable raw data (the same steps as a backfill run) | validated partitions and splits overwritten in place | split rows = validated rows, no row twice; raw unchanged |

Every test restarts what it stopped in a ``finally`` block.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import pipeline, validate
from core.s3 import s3_client, split_uri
from deploy.local.stack import Stack
from tests.airflow_api import AirflowAPI
from workloads.taxi import WORKLOAD, generate

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _quiet(_: str) -> None:
    pass


def raw_listing(settings, root: str) -> dict[str, tuple[str, int]]:
    """Every file under ``<root>/raw/``: key -> (ETag, size). Folder markers (keys ending in '/') are left out."""
    bucket, prefix = split_uri(f"{root.rstrip('/')}/raw/")
    out = {}
    for page in s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                out[obj["Key"]] = (obj["ETag"], obj["Size"])
    return out


def put_raw(settings, root: str, day: dt.date, name: str, data: bytes) -> str:
    uri = f"{WORKLOAD.partition(root, day)}/{name}"
    bucket, key = split_uri(uri)
    s3_client(settings).put_object(Bucket=bucket, Key=key, Body=data)
    return uri


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# ----------------------------------------------------------------------------------------------- MariaDB / serving_sync
def test_mariadb_outage_during_serving_sync_is_retried_by_airflow_without_duplicates(stack, settings, unique):
    from tests.integration.test_serving_sync import SyncEnv

    env = SyncEnv(settings, unique)
    ids = env.predict(300)
    env.redeliver(ids[:60])  # the stream scored some twice: MySQL must hold one row each, the last score
    env.complete(ids[:120])
    env.flush()
    mariadb = Stack(settings, ["mariadb"], with_dependencies=False, echo=_quiet)
    api = AirflowAPI(settings)
    dag, task = "serving_sync", "sync_to_mysql"
    api.wait_for_dag(dag)
    api.call("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
    try:
        assert mariadb.down() == ["mariadb"]
        run_id = api.call("POST", f"/api/v2/dags/{dag}/dagRuns",
                          {"dag_run_id": f"it_faults_{unique}", "logical_date": None})["dag_run_id"]
        quoted = urllib.parse.quote(run_id, safe="")
        deadline = time.monotonic() + 300
        tis = f"/api/v2/dags/{dag}/dagRuns/{quoted}/taskInstances/{task}"
        while (ti := api.call("GET", tis))["state"] != "up_for_retry":
            assert time.monotonic() < deadline, f"{task} never failed while MariaDB was down"
            assert ti["state"] not in ("success", "failed"), ti["state"]
            time.sleep(2)
        assert ti["try_number"] == 1
    finally:
        mariadb.up()
    try:
        deadline = time.monotonic() + 300
        while (run := api.call("GET", f"/api/v2/dags/{dag}/dagRuns/{quoted}"))["state"] not in ("success", "failed"):
            assert time.monotonic() < deadline, f"{dag} run {run_id} did not finish after MariaDB came back"
            time.sleep(3)
        assert run["state"] == "success", api.failed_tasks(dag, run_id)
        assert api.call("GET", tis)["try_number"] >= 2  # it is the retry that finished it
        first_try = api.call("GET", f"{tis}/logs/1?full_content=true")
        log = json.dumps(first_try)  # structured entries: the exception is in their error_detail
        assert "OperationalError" in log and "Can't connect to MySQL server" in log, log[-2000:]

        got = env.snapshot(with_write_times=False)
        rows = got["predictions"]
        assert len(rows) == len({r[0] for r in rows}) == len(env.predictions) == len(ids)  # every trip, once
        assert {r[0]: r[7] for r in rows} == {t: p["predicted_duration_s"] for t, p in env.predictions.items()}
        assert len(got["outcomes"]) == len(env.outcomes)
        assert got["stats"] == env.expected_stats()
        assert sum(r[2] for r in got["stats"]) == len(ids)
    finally:
        env.delete_rows()
        env.eng.dispose()


# ------------------------------------------------------------------------------------------------- S3 / preprocessing
DAY = dt.date(2026, 9, 14)


def test_s3_outage_during_preprocess_is_ridden_out_and_raw_data_is_untouched(spark, settings, unique):
    """S3 goes away while the ``preprocess`` step runs and comes back 30 s later: S3A's retries carry the step
    through, it writes every validated row once, and the raw objects are unchanged. (An outage longer than S3A's
    retry budget, several minutes here, fails the step with the S3 connection error, and Airflow's retry runs
    it again; that takes too long for the suite.)"""
    import threading

    root = settings.s3.uri("it", f"faults-s3-{unique}")
    generate.generate(settings, DAY, 1, 600, seed=5, lake_root=root, echo=_quiet)
    valid = pipeline.validate_day(DAY.isoformat(), lake_root=root)["valid"]
    before = raw_listing(settings, root)
    assert len(before) == 1
    dag_id, run_id = "batch_training", f"it_faults_{unique}"
    outcome: dict = {}

    def step() -> None:
        try:
            outcome["result"] = pipeline.preprocess([DAY.isoformat()], pipeline.dataset_key(dag_id, run_id), dag_id,
                                                    run_id, lake_root=root)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome["error"] = exc

    s3 = Stack(settings, ["s3"], with_dependencies=False, echo=_quiet)
    worker = threading.Thread(target=step)
    try:
        assert s3.down() == ["s3"]
        worker.start()
        time.sleep(30)
        assert worker.is_alive() and not outcome, f"the step cannot finish without S3: {outcome}"
    finally:
        s3.up()
    worker.join(600)
    assert not worker.is_alive(), "the step did not finish after S3 came back"
    assert "error" not in outcome, outcome.get("error")
    assert sum(outcome["result"]["rows"].values()) == valid
    assert spark.read.parquet(outcome["result"]["uri"]).count() == valid
    assert raw_listing(settings, root) == before


def _step_in_a_task_process(settings, day: dt.date, dataset: str, run_id: str, root: str, **env: str):
    """Run ``preprocess`` the way an Airflow try does: a fresh process that reads the settings from its environment."""
    import subprocess
    import sys

    code = ("import json, sys; from batch import pipeline; "
            "print(json.dumps(pipeline.preprocess([sys.argv[1]], sys.argv[2], 'batch_training', sys.argv[3], "
            "lake_root=sys.argv[4])))")
    return subprocess.run([sys.executable, "-c", code, day.isoformat(), dataset, run_id, root],
                          env=settings.child_env(**env), capture_output=True, text=True, timeout=600)


def test_s3_outage_longer_than_the_retry_budget_fails_the_try_clearly_and_the_retry_succeeds(spark, settings, unique):
    """S3 stays away longer than the step's S3A retry budget (set low here, as an operator may): the try fails
    with an error that names S3 and what to do, not a JVM stack trace; once S3 is back, the next try (same
    configuration, a fresh process, as Airflow runs it) writes every validated row once. Raw data is unchanged."""
    root = settings.s3.uri("it", f"faults-s3-budget-{unique}")
    generate.generate(settings, DAY, 1, 400, seed=15, lake_root=root, echo=_quiet)
    valid = pipeline.validate_day(DAY.isoformat(), lake_root=root)["valid"]
    before = raw_listing(settings, root)
    run_id = f"it_faults_budget_{unique}"
    dataset = pipeline.dataset_key("batch_training", run_id)
    budget = {"LAMBDAML_S3__RETRY_LIMIT": "1", "LAMBDAML_S3__SDK_ATTEMPTS": "1"}

    s3 = Stack(settings, ["s3"], with_dependencies=False, echo=_quiet)
    try:
        assert s3.down() == ["s3"]
        started = time.monotonic()
        first = _step_in_a_task_process(settings, DAY, dataset, run_id, root, **budget)
        failed_after = time.monotonic() - started
    finally:
        s3.up()
    assert first.returncode != 0, first.stdout
    said = [line for line in first.stderr.splitlines() if line.startswith("core.spark.StorageUnavailable: ")]
    assert said, first.stderr[-3000:]
    print(f"try 1 failed after {failed_after:.1f}s: {said[-1]}")
    assert said[-1].startswith("core.spark.StorageUnavailable: preprocess: the S3 server at "
                               f"{settings.s3.endpoint} did not answer"), said[-1]
    assert "Connection refused" in said[-1] and "LAMBDAML_S3__RETRY_LIMIT=1" in said[-1], said[-1]

    second = _step_in_a_task_process(settings, DAY, dataset, run_id, root, **budget)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert sum(result["rows"].values()) == valid
    assert spark.read.parquet(result["uri"]).count() == valid
    assert raw_listing(settings, root) == before
    print(f"try 2: {valid} validated rows written once; raw objects unchanged ({len(before)})")


# -------------------------------------------------------------------------------------------------- bad raw partitions
def test_bad_raw_files_fail_validation_naming_the_file_and_leave_raw_untouched(spark, settings, unique):
    root = settings.s3.uri("it", f"faults-raw-{unique}")
    generate.generate(settings, DAY, 1, 300, seed=6, lake_root=root, echo=_quiet)
    wrong_schema = parquet_bytes(pa.table({"trip": ["a", "b"], "fare": [1.0, 2.0]}))
    for name, data, says in (("wrong-schema.parquet", wrong_schema, "missing column(s)"),
                             ("garbage.parquet", b"PK\x03\x04 this is a zip file, not Parquet" * 20, "not a readable Parquet"),
                             ("empty.parquet", b"", "not a readable Parquet")):
        day_root = f"{root}/{name.split('.')[0]}"
        generate.generate(settings, DAY, 1, 300, seed=6, lake_root=day_root, echo=_quiet)
        put_raw(settings, day_root, DAY, name, data)
        before = raw_listing(settings, day_root)
        with pytest.raises(ValueError) as failure:
            validate.run(spark, settings, DAY, lake_root=day_root)
        assert name in str(failure.value) and says in str(failure.value), str(failure.value)
        assert raw_listing(settings, day_root) == before
    # The clean partition beside them is unaffected.
    assert validate.run(spark, settings, DAY, lake_root=root).rows_in == 300


def test_wrongly_typed_raw_columns_are_quarantined_and_counts_reconcile(spark, settings, unique):
    root = settings.s3.uri("it", f"faults-types-{unique}")
    generate.generate(settings, DAY, 1, 300, seed=7, dirty_share=0.0, lake_root=root, echo=_quiet)
    clean = generate.generate_day(DAY, 40, seed=8, dirty_share=0.0)
    # The same trips, written by a loader that put every number in a string; a few are not numbers at all.
    as_text = {name: [None if v is None else str(v) for v in clean.column(name).to_pylist()]
               for name in ("PULocationID", "DOLocationID", "trip_distance", "passenger_count")}
    as_text["PULocationID"][:4] = ["Midtown", "", "n/a", "161.0.0"]
    as_text["trip_distance"][4:7] = ["far", "1,5", "--"]
    typed = clean
    for name, values in as_text.items():
        typed = typed.set_column(typed.schema.get_field_index(name), name, pa.array(values, pa.string()))
    put_raw(settings, root, DAY, "strings.parquet", parquet_bytes(typed))
    before = raw_listing(settings, root)

    result = validate.run(spark, settings, DAY, lake_root=root)
    assert result.ok and result.rows_in == 340
    assert result.by_rule == {"null_required_field": 7} and result.valid == 333, result
    assert raw_listing(settings, root) == before


# ------------------------------------------------------------------------------------------------------ reprocessing
def test_reprocessing_past_days_overwrites_splits_and_leaves_raw_unchanged(spark, settings, unique):
    """What a backfill run of ``batch_training`` does for past days once a bug is fixed: its steps again over the
    same immutable raw partitions, writing the same dataset (the steps Airflow runs, called directly)."""
    root = settings.s3.uri("it", f"faults-backfill-{unique}")
    days = [DAY]
    generate.generate(settings, DAY, 1, 500, seed=9, lake_root=root, echo=_quiet)
    before = raw_listing(settings, root)
    dag_id, run_id = "batch_training", f"backfill__{DAY}T03:00:00+00:00_{unique}"
    dataset = pipeline.dataset_key(dag_id, run_id)
    results = []
    for _ in range(2):  # the first run, then the backfill over the same days
        validated = [pipeline.validate_day(d.isoformat(), lake_root=root) for d in days]
        results.append((validated, pipeline.preprocess([d.isoformat() for d in days], dataset, dag_id, run_id,
                                                       lake_root=root)))
    (v1, d1), (v2, d2) = results
    assert v1 == v2 and d1["rows"] == d2["rows"] and d1["uri"] == d2["uri"]
    valid = sum(v["valid"] for v in v2)
    splits = spark.read.parquet(d2["uri"])
    assert splits.count() == sum(d2["rows"].values()) == valid  # overwritten, not appended
    assert raw_listing(settings, root) == before
