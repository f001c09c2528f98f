"""The batch layer end to end: generated trips on S3, `batch_training` run by Airflow,
then every promise checked against the real services."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import text

from batch import pipeline
from core import hive
from core import kafka as k
from core.db import engine
from core.registry import Registry
from tests.e2e.training import train
from workloads.taxi import WORKLOAD, generate

START, DAYS, ROWS, DIRTY = dt.date(2026, 10, 1), 3, 4000, 0.03
TAXI_MODEL = WORKLOAD.model_name
END = START + dt.timedelta(days=DAYS - 1)


def _messages(settings, topic: str, since_ms: int) -> list:
    consumer = k.consumer(settings, group_id=f"e2e-{topic}-{since_ms}")
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p, since_ms) for p in meta.partitions]
    consumer.assign(consumer.offsets_for_times(parts, timeout=10))
    out, idle_until = [], time.monotonic() + 8
    try:
        while time.monotonic() < idle_until:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                out.append(msg)
                idle_until = time.monotonic() + 3
    finally:
        consumer.close()
    return out


@pytest.fixture(scope="module")
def dag_run(stack, settings):
    """One run of batch_training, triggered through the running Airflow's API as a user would."""
    generate.generate(settings, START, DAYS, ROWS, seed=11, dirty_share=DIRTY, echo=lambda _: None)
    started_ms = int(time.time() * 1000) - 1000
    return {**train(settings, {"end_date": END.isoformat(), "days_back": DAYS}), "since_ms": started_ms}


def test_counts_reconcile_and_quarantine_holds_every_dirty_row(dag_run, spark, settings):
    from batch.validate import REASON_COL

    base = settings.s3.uri()
    for i in range(DAYS):
        day = (START + dt.timedelta(days=i)).isoformat()
        raw = spark.read.parquet(f"{base}/raw/trips/pickup_date={day}").count()
        valid = spark.read.parquet(f"{base}/validated/trips/pickup_date={day}").count()
        bad = spark.read.parquet(f"{base}/quarantine/trips/pickup_date={day}")
        assert raw == valid + bad.count()
        assert bad.count() == round(ROWS * DIRTY)
        assert bad.where(bad[REASON_COL].isNull()).count() == 0


def test_model_registered_with_matching_artifact_and_beats_baseline(dag_run, settings):
    registry = Registry(settings)
    mv = registry.get(TAXI_MODEL, dag_run["version"])
    artifact = registry.load(mv)  # refuses a sha256 mismatch
    assert artifact.build_model() is not None
    assert mv.artifact_uri.startswith(f"s3a://{settings.s3.bucket}/models/")
    assert mv.data_partitions == [f"raw/trips/pickup_date={START + dt.timedelta(days=i)}" for i in range(DAYS)]
    model_mae, base_mae = dag_run["test"]["model"]["mae_s"], dag_run["test"]["baseline"]["mae_s"]
    assert model_mae <= 0.85 * base_mae, (model_mae, base_mae)


def test_the_demo_report_reads_this_run_back_from_the_registry(dag_run, settings):
    """The report's section on versions, built as ``make demo`` builds it, from what this run recorded."""
    from deploy.local.demo import registered_models, report_text

    models = registered_models(settings, newest=50)
    models = models[next(i for i, m in enumerate(models) if m["version"] == dag_run["version"]):]
    figures = {"models": models, "stream": {"predictions": 0, "p50_ms": None, "p99_ms": None, "dead_letters": 0},
               "mysql": {}, "hive": {}}
    lines = report_text(figures, "trips.predictions", "trips.dlq").splitlines()
    start = lines.index("Model versions on one test split (MAE in seconds)")
    block = lines[start:lines.index("", start)]
    assert f"split: the test split of {dag_run['version']}" in block[1]
    assert f"pickup days {START} .. {END}" in block[1]
    mine = next(line for line in block if dag_run["version"] in line and "MAE" in line)
    assert f"MAE {round(dag_run['test']['model']['mae_s']):>6d}" in mine and "better than the baseline" in mine
    assert any(line.strip().startswith("baseline") and f"{round(dag_run['test']['baseline']['mae_s'])}" in line
               for line in block)
    assert any(line.strip().startswith("promotion decision: ") for line in block), block


def test_events_and_model_announcement_on_kafka(dag_run, settings):
    events = [json.loads(m.value()) for m in _messages(settings, settings.kafka.batch_events_topic, dag_run["since_ms"])]
    mine = [e for e in events if e["run_id"] == dag_run["run_id"] and e["step"] == "preprocess"]
    assert mine and mine[-1]["status"] == "success" and mine[-1]["rows"] > 0
    assert mine[-1]["uri"].startswith("s3a://")
    registry = Registry(settings)
    if registry.get(TAXI_MODEL, dag_run["version"]).stage == "production":
        models = [json.loads(m.value()) for m in _messages(settings, settings.kafka.models_topic, dag_run["since_ms"])]
        assert any(m["version"] == dag_run["version"] and m["sha256"] for m in models)
    metrics = [json.loads(m.value()) for m in _messages(settings, settings.kafka.metrics_topic, dag_run["since_ms"])]
    assert any(m["name"] == "test_mae_s" and m["tags"]["run_id"] == dag_run["run_id"] for m in metrics)


def _hive_rows(settings, run_id: str) -> list:
    conn = hive.connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT model_version, rows_in, quarantined FROM lake.training_runs WHERE run_id = %(r)s",
                    {"r": run_id})
        return cur.fetchall()
    finally:
        conn.close()


def test_pyhive_reads_the_training_run(dag_run, settings):
    assert _hive_rows(settings, dag_run["run_id"]) == [(dag_run["version"], DAYS * ROWS, DAYS * round(ROWS * DIRTY))]


def test_rerunning_the_steps_of_the_same_run_changes_nothing(dag_run, settings):
    """What an Airflow retry or clear does: every step again, with the same run id."""
    run_id, dag_id = dag_run["run_id"], "batch_training"
    registry = Registry(settings)
    versions_before = len(registry.list(TAXI_MODEL))
    days = pipeline.partition_days(END.isoformat(), DAYS)
    validated = [pipeline.validate_day(d) for d in days]
    assert sum(v["quarantined"] for v in validated) == DAYS * round(ROWS * DIRTY)
    dataset = pipeline.preprocess(days, pipeline.dataset_key(dag_id, run_id), dag_id, run_id)
    params = registry.get(TAXI_MODEL, dag_run["version"]).params
    tuned = {"config": params, "trials": params["trials"]}
    registered = pipeline.train_and_register(dataset, tuned, run_id)
    assert registered["version"] == dag_run["version"]
    evaluated = registry.get(TAXI_MODEL, dag_run["version"])
    outcome = pipeline.evaluate_and_promote(dataset, registered)
    # The first try's verdict stands: judged again, the version (now its own champion) would overwrite it.
    again = registry.get(TAXI_MODEL, dag_run["version"])
    assert again.metrics == evaluated.metrics and again.stage == evaluated.stage
    assert again.promoted_at == evaluated.promoted_at
    assert (outcome["promoted"], outcome["reason"]) == (evaluated.metrics["promoted"], evaluated.metrics["decision"])
    pipeline.publish(validated, dataset, tuned, outcome, dag_id, run_id)
    assert len(registry.list(TAXI_MODEL)) == versions_before
    eng = engine(settings)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM training_runs WHERE run_id = :r"), {"r": run_id}).scalar() == 1
    eng.dispose()
    assert len(_hive_rows(settings, run_id)) == 1


BACKFILL_SLOT = dt.datetime(2026, 10, 4, 3, tzinfo=dt.UTC)  # the daily 03:00 run after END


def test_a_backfill_rebuilds_the_splits_and_the_model_from_unchanged_raw_data(dag_run, settings):
    """Reprocessing once a bug is fixed: an Airflow backfill of ``batch_training`` over days already trained on
    runs every step again from the immutable raw partitions (validated days overwritten, new splits, a new model
    version) and leaves the raw objects exactly as they were."""
    from tests.airflow_api import AirflowAPI
    from tests.e2e.test_faults import raw_listing

    days = pipeline.partition_days(END.isoformat(), DAYS)

    def raw() -> dict:  # the raw objects of the trained days: key -> (ETag, size)
        return {key: obj for key, obj in raw_listing(settings, settings.s3.uri()).items()
                if any(f"pickup_date={d}/" in key for d in days)}

    raw_before = raw()
    assert len(raw_before) >= DAYS
    since_ms = int(time.time() * 1000) - 1000
    api = AirflowAPI(settings)
    backfill = api.call("POST", "/api/v2/backfills", {
        "dag_id": "batch_training", "from_date": (BACKFILL_SLOT - dt.timedelta(hours=1)).isoformat(),
        "to_date": (BACKFILL_SLOT + dt.timedelta(hours=1)).isoformat(), "max_active_runs": 1,
        "reprocess_behavior": "completed", "dag_run_conf": {"end_date": END.isoformat(), "days_back": DAYS}})
    deadline = time.monotonic() + 1200
    while True:  # the backfill's run: of this slot, queued since the backfill was made
        runs = [r for r in api.call("GET", "/api/v2/dags/batch_training/dagRuns?limit=100")["dag_runs"]
                if r["run_type"] == "backfill" and r["logical_date"] and r["queued_at"]
                and dt.datetime.fromisoformat(r["logical_date"]) == BACKFILL_SLOT
                and dt.datetime.fromisoformat(r["queued_at"]).timestamp() * 1000 >= since_ms]
        if runs and runs[0]["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"backfill {backfill['id']} did not finish: {runs}"
        time.sleep(10)
    (run,) = runs
    assert run["state"] == "success", api.failed_tasks("batch_training", run["dag_run_id"])
    assert run["conf"]["end_date"] == END.isoformat()

    eng = engine(settings)
    with eng.connect() as conn:
        version = conn.execute(text("SELECT model_version FROM training_runs WHERE run_id = :r"),
                               {"r": run["dag_run_id"]}).scalar_one()
    eng.dispose()
    assert version != dag_run["version"]  # a model of its own, trained on the rebuilt splits
    assert Registry(settings).get(TAXI_MODEL, version).data_partitions == \
        [f"raw/trips/pickup_date={d}" for d in days]
    events = [json.loads(m.value()) for m in _messages(settings, settings.kafka.batch_events_topic, since_ms)]
    (prep,) = [e for e in events if e["run_id"] == run["dag_run_id"] and e["step"] == "preprocess"]
    assert prep["rows"] == DAYS * (ROWS - round(ROWS * DIRTY))  # every valid row, once
    assert pipeline.dataset_key("batch_training", run["dag_run_id"]) in prep["uri"]  # splits of its own
    assert raw() == raw_before
