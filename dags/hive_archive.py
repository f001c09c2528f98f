"""Serving layer: archive one pickup day to Hive, move the batch coverage, apply MySQL retention.

Runs daily at 07:00 UTC for the day before, once its last trips (at most six hours long) have
completed and the sync has brought their outcomes to MySQL. Trigger it by hand with
``{"day": "YYYY-MM-DD"}`` to archive (again) a chosen day; re-running a day overwrites its Hive
partitions and changes nothing else. The rules are in ``serving.archive``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from core.schedules import cron


@dag(
    schedule=cron("0 7 * * *"),
    catchup=False,
    max_active_runs=1,
    tags=["serving", "archive"],
    params={
        "day": Param(None, type=["null", "string"], description="Pickup date to archive (YYYY-MM-DD); "
                                                                "default: the day before the run."),
        "view": Param("zone_hour_stats", type="string", description="The batch_coverage row to move "
                                                                    "(tests use their own)."),
    },
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
)
def hive_archive():
    @task
    def archive_day() -> dict:
        from serving.archive import archive_step

        ctx = get_current_context()
        day = ctx["params"]["day"] or (ctx["dag_run"].run_after - pendulum.duration(days=1)).date().isoformat()
        return archive_step(day, ctx["params"]["view"])

    @task
    def apply_retention(archived: dict) -> dict:
        from serving.archive import retention_step

        return retention_step(archived["view"])

    apply_retention(archive_day())


hive_archive()
