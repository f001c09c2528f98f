"""Run ``batch_training`` through the running Airflow's API, as a user triggers it, and read what it recorded."""

from __future__ import annotations

import json

from sqlalchemy import text

from core.db import engine
from tests.airflow_api import AirflowAPI


def train(settings, conf: dict, dag_id: str = "batch_training") -> dict:
    """One successful run of a batch training DAG (taxi's unless ``dag_id`` names another workload's) with
    ``conf``: its run id, the version it registered and the test metrics it recorded in ``training_runs``."""
    api = AirflowAPI(settings)
    run = api.run_dag(dag_id, conf)
    assert run["state"] == "success", api.failed_tasks(dag_id, run["dag_run_id"])
    eng = engine(settings)
    with eng.connect() as conn:
        row = conn.execute(text("SELECT model_version, metrics_json FROM training_runs WHERE run_id = :r"),
                           {"r": run["dag_run_id"]}).mappings().one()
    eng.dispose()
    return {"run_id": run["dag_run_id"], "version": row["model_version"], "test": json.loads(row["metrics_json"])}
