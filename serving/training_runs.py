"""Record a finished training run: upsert in MySQL, overwrite its partition in Hive."""

from __future__ import annotations

import json
from typing import Any

from core.db import engine, load_sql
from core.settings import Settings

HIVE_COLUMNS = ("dag_id", "model_name", "model_version", "status", "trials", "best_params", "rows_in",
                "quarantined", "train_rows", "test_mae_s", "baseline_mae_s", "finished_at", "run_id")


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
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    runs = spark.createDataFrame([tuple(run[c] for c in HIVE_COLUMNS)], list(HIVE_COLUMNS))
    runs.selectExpr(*[f"CAST({c} AS {t})" if t else c for c, t in _casts()]).write.insertInto(
        f"{db}.training_runs", overwrite=True)
    metrics = spark.createDataFrame(metric_rows(run), "model_version string, evaluated string, metric string, "
                                                      "value double, run_id string")
    metrics.write.insertInto(f"{db}.model_metrics", overwrite=True)


def _casts():
    types = {"trials": "INT", "rows_in": "BIGINT", "quarantined": "BIGINT", "train_rows": "BIGINT",
             "test_mae_s": "DOUBLE", "baseline_mae_s": "DOUBLE", "finished_at": "TIMESTAMP"}
    return [(c, types.get(c)) for c in HIVE_COLUMNS]
