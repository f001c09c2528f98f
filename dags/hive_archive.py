"""Serving layer, one DAG per workload: recompute one day's Hive batch views from master data, move the batch
coverage, apply MySQL retention.

A factory gives every workload folder its own DAG: ``hive_archive`` for taxi, ``<workload>_hive_archive`` for
the others. Each runs daily at 07:00 UTC for the day before, once its last events have completed and the sync has
brought their outcomes to MySQL. Trigger it by hand with ``{"day": "YYYY-MM-DD"}`` to archive (again) a chosen
day; re-running a day recomputes its Hive partitions from the master log and changes nothing else. The rules are
in ``serving.archive``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from core.schedules import cron
from core.views import RealTimeViews
from core.workload import Workload, known, load


def hive_archive(wl: Workload):
    """The archive DAG of one workload."""
    name = wl.name

    @dag(
        dag_id=wl.dag_id("hive_archive"),
        description=f"Recompute a day of {name}'s Hive batch views from master data, move its batch coverage, "
                    "apply MySQL retention",
        schedule=cron("0 7 * * *"),
        catchup=False,
        max_active_runs=1,
        tags=["serving", "archive", f"workload:{name}"],
        params={
            "day": Param(None, type=["null", "string"], description="Day to archive (YYYY-MM-DD), by the event "
                                                                    "time; default: the day before the run."),
            "view": Param(RealTimeViews(wl).hourly, type="string", description="The batch_coverage row to move: "
                          "the workload's hourly view (tests use their own)."),
            "wait_for_master": Param(True, type="boolean", description="Wait until the lake sink has written every "
                                     "record Kafka holds of the workload's topics to the master log."),
        },
        default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    )
    def archive():
        @task
        def archive_day() -> dict:
            from serving.archive import archive_step

            ctx = get_current_context()
            day = ctx["params"]["day"] or (ctx["dag_run"].run_after - pendulum.duration(days=1)).date().isoformat()
            return archive_step(day, ctx["params"]["view"], workload=name,
                                wait_for_master=ctx["params"]["wait_for_master"])

        @task
        def apply_retention(archived: dict) -> dict:
            from serving.archive import retention_step

            return retention_step(archived["view"], workload=name)

        apply_retention(archive_day())

    return archive()


for _name in known():
    hive_archive(load(_name))
