"""Record a finished training run: upsert in MySQL, overwrite its partition in Hive."""

from __future__ import annotations

import json
from typing import Any

from core.db import engine, load_sql
from core.settings import Settings

# Column order of lake.training_runs (sql/hive/training_runs.sql); insertInto matches by position.
HIVE_SCHEMA = ("dag_id string, model_name string, model_version string, status string, trials int, "
               "best_params string, rows_in bigint, quarantined bigint, train_rows bigint, test_mae_s double, "
               "baseline_mae_s double, finished_at timestamp, run_id string")
HIVE_COLUMNS = tuple(part.split()[0] for part in HIVE_SCHEMA.split(", "))


def metric_rows(run: dict[str, Any]) -> list[tuple]:
    test = json.loads(run["metrics_json"])
    rows = []
    for evaluated, values in test.items():
        for metric, value in (values or {}).items():
            rows.append((run["model_version"], evaluated, metric, float(value), run["run_id"]))
    return rows


def record(settings: Settings, run: dict[str, Any], spark) -> None:
    from sqlalchemy import text

    eng = engine(settings)
    try:
        with eng.begin() as conn:
            conn.execute(text(load_sql("serving/upsert_training_run")), {
                "run_id": run["run_id"], "dag_run_id": run["run_id"], "model_name": run["model_name"],
                "model_version": run["model_version"], "status": run["status"], "trials": run["trials"],
                "best_params": run["best_params"], "metrics_json": run["metrics_json"],
                "finished_at": run["finished_at"],
            })
    finally:
        eng.dispose()

    db = settings.spark.hive_database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    spark.sql(load_sql("hive/training_runs").replace("lake.", f"{db}."))
    spark.sql(load_sql("hive/model_metrics").replace("lake.", f"{db}."))
    runs = spark.createDataFrame([tuple(run[c] for c in HIVE_COLUMNS)], HIVE_SCHEMA)
    runs.write.insertInto(f"{db}.training_runs", overwrite=True)
    metrics = spark.createDataFrame(metric_rows(run), "model_version string, evaluated string, metric string, "
                                                      "value double, run_id string")
    metrics.write.insertInto(f"{db}.model_metrics", overwrite=True)
