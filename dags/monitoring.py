"""Monitoring: feature drift (PSI) and live error of the production model, every 15 minutes.

A breach marks the drift asset, which schedules ``batch_training``. Without a
breach the ``mark_drift`` task is skipped, and a skipped task emits no asset
event. Reports land in MySQL ``drift_reports`` (see ``sql/queries/``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import Asset, Param, dag, get_current_context, task

from core.assets import DRIFT_ASSET_URI
from core.schedules import cron


@dag(
    schedule=cron("*/15 * * * *"),
    catchup=False,
    max_active_runs=1,
    tags=["serving", "monitoring"],
    params={
        "model_name": Param("trip_duration", type="string", description="Registered model to monitor."),
        "window_minutes": Param(None, type=["null", "integer"], minimum=1,
                                description="Live window to judge; default LAMBDAML_MONITORING__WINDOW_MINUTES."),
    },
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=20)},
)
def monitoring():
    @task
    def check_drift() -> dict | None:
        from core.settings import get_settings
        from serving.monitor import check

        params = get_current_context()["params"]
        verdict = check(get_settings(), name=params["model_name"], window_minutes=params["window_minutes"])
        return verdict.summary() if verdict else None

    @task(outlets=[Asset(DRIFT_ASSET_URI)])
    def mark_drift(verdict: dict | None) -> dict:
        if not verdict or not verdict["breached"]:
            raise AirflowSkipException("no drift: " + ("no production model" if not verdict else
                                                       f"max PSI {verdict['max_psi']}, live MAE "
                                                       f"{verdict['live_mae_s']}"))
        return verdict

    mark_drift(check_drift())


monitoring()
