"""Serving layer, one DAG per workload: sync its predictions and outcomes from Kafka into its MySQL real-time views.

A factory gives every workload folder its own DAG: ``serving_sync`` for taxi (which also syncs the shared
``metrics`` topic into ``serving_metrics``), ``<workload>_serving_sync`` for the others. Every five minutes, one
bounded run from the offsets stored in MySQL up to the ends of the topics when it starts: for taxi
predictions_recent, trip_outcomes and zone_hour_stats, for bike bike_predictions, bike_outcomes and bike_hourly
(``core.views``). Retrying or re-running it changes nothing already synced. By hand:
``python -m serving.sync --workload bike``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from core.schedules import cron
from core.workload import Workload, known, load


def serving_sync(wl: Workload):
    """The sync DAG of one workload."""
    name = wl.name

    @dag(
        dag_id=wl.dag_id("serving_sync"),
        description=f"Sync the {name} predictions and outcomes from Kafka into MySQL",
        schedule=cron("*/5 * * * *"),
        catchup=False,
        max_active_runs=1,
        tags=["serving", "mysql", f"workload:{name}"],
        default_args={"retries": 3, "retry_delay": pendulum.duration(seconds=20)},
    )
    def sync():
        @task(execution_timeout=pendulum.duration(minutes=20))
        def sync_to_mysql() -> dict:
            from core.settings import get_settings
            from serving.sync import run

            return run(get_settings(), workload=name).as_dict()

        sync_to_mysql()

    return sync()


for _name in known():
    serving_sync(load(_name))
