"""Serving layer: sync predictions, outcomes and metrics from Kafka into MySQL's real-time views.

Every five minutes, one bounded run from the offsets stored in MySQL up to the ends of the topics
when it starts: predictions_recent, trip_outcomes, serving_metrics and zone_hour_stats. Retrying
or re-running it changes nothing already synced. By hand: ``python -m serving.sync``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from core.schedules import cron


@dag(
    schedule=cron("*/5 * * * *"),
    catchup=False,
    max_active_runs=1,
    tags=["serving", "mysql"],
    default_args={"retries": 3, "retry_delay": pendulum.duration(seconds=20)},
)
def serving_sync():
    @task(execution_timeout=pendulum.duration(minutes=20))
    def sync_to_mysql() -> dict:
        from core.settings import get_settings
        from serving.sync import run

        return run(get_settings()).as_dict()

    sync_to_mysql()


serving_sync()
