"""Monitoring, one DAG per workload: feature drift (PSI) and live error of its production model, every 15 minutes;
once a day, the reconciliation of Kafka, the master log, Hive and MySQL.

A factory gives every workload folder its own DAG: ``monitoring`` for taxi, ``<workload>_monitoring`` for the
others. A breach marks the workload's drift asset, which schedules its training DAG (``batch_training``,
``bike_batch_training``). Without a breach the ``mark_drift`` task is skipped, and a skipped task emits no asset
event. Reports land in MySQL ``drift_reports`` (see ``sql/queries/``).

The ``reconcile`` task runs in the run of ``monitoring.reconcile_at`` (07:45 UTC, after ``hive_archive``), or when
triggered with ``{"reconcile": true}``; in the other runs it is skipped. It logs, per topic and day, Kafka's offsets,
the master log's rows, and the predictions in the master log, Hive and MySQL, with a verdict where they differ
(``serving.reconcile``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from core.assets import drift_asset_uri
from core.schedules import cron
from core.workload import Workload, known, load

EVERY_MINUTES = 15


def monitoring(wl: Workload):
    """The monitoring DAG of one workload."""
    name = wl.name

    @dag(
        dag_id=wl.dag_id("monitoring"),
        description=f"Drift and live error of the {name} model ({wl.model_name}); a breach retrains it",
        schedule=cron(f"*/{EVERY_MINUTES} * * * *"),
        catchup=False,
        max_active_runs=1,
        tags=["serving", "monitoring", f"workload:{name}"],
        params={
            "model_name": Param(wl.model_name, type="string", description="Registered model to monitor."),
            "window_minutes": Param(None, type=["null", "integer"], minimum=1,
                                    description="Live window to judge; default LAMBDAML_MONITORING__WINDOW_MINUTES."),
            "reconcile": Param(False, type="boolean", description="Reconcile Kafka, the master log, Hive and MySQL "
                               "in this run too (a Spark job; by default only the run of monitoring.reconcile_at)."),
        },
        default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=20)},
    )
    def watch():
        @task
        def check_drift() -> dict | None:
            from core.settings import get_settings
            from serving.monitor import check

            params = get_current_context()["params"]
            verdict = check(get_settings(), name=params["model_name"], window_minutes=params["window_minutes"],
                            workload=name)
            return verdict.summary() if verdict else None

        @task(outlets=[Asset(drift_asset_uri(wl.model_name))])
        def mark_drift(verdict: dict | None) -> dict:
            if not verdict or not verdict["breached"]:
                raise AirflowSkipException("no drift: " + ("no production model" if not verdict else
                                                           f"max PSI {verdict['max_psi']}, live {verdict['metric']} "
                                                           f"{verdict['live_mae_s']}"))
            return verdict

        @task
        def reconcile() -> dict:
            import datetime as dt

            from core.schedules import in_daily_slot
            from core.settings import get_settings
            from serving.reconcile import reconcile_step

            ctx, settings = get_current_context(), get_settings()
            m = settings.monitoring
            if not ctx["params"]["reconcile"] and not in_daily_slot(ctx["dag_run"].run_after, m.reconcile_at,
                                                                    dt.timedelta(minutes=EVERY_MINUTES)):
                raise AirflowSkipException(f"reconciliation runs daily at {m.reconcile_at} UTC")
            return reconcile_step(name, m.reconcile_days, settings)

        mark_drift(check_drift())
        reconcile()

    return watch()


for _name in known():
    monitoring(load(_name))
