"""Batch layer, one DAG per workload: validate raw rows, preprocess, tune, train, evaluate, register, publish.

A factory gives every workload folder (``core.workload.known``) its own DAG:
``batch_training`` for taxi, ``<workload>_batch_training`` for the others,
each with its own drift asset. Each runs daily at 03:00 UTC over the last
``days_back`` days of raw partitions, and whenever monitoring marks its drift
asset. Trigger it by hand with
``{"end_date": "YYYY-MM-DD", "days_back": 3}`` or an explicit range
``{"start_date": "YYYY-MM-DD", "end_date": "YYYY-MM-DD"}`` to train on chosen days.
A data error (an unreadable file, a split below its minimum) fails its task at
once; retries are for services that may come back. Every task runs at the batch
layer's CPU priority (``batch.cpu_nice``), below the speed layer's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.timetables.assets import AssetOrTimeSchedule

from core.assets import drift_asset_uri
from core.schedules import cron
from core.workload import Workload, known, load


def batch_training(wl: Workload):
    """The batch training DAG of one workload."""
    name = wl.name

    @dag(
        dag_id=wl.dag_id("batch_training"),
        description=f"Train, evaluate and publish the {name} model ({wl.model_name})",
        schedule=AssetOrTimeSchedule(timetable=cron("0 3 * * *"), assets=[Asset(drift_asset_uri(wl.model_name))]),
        catchup=False,
        max_active_runs=1,
        tags=["batch", "training", f"workload:{name}"],
        params={
            "end_date": Param(None, type=["null", "string"], description="Last day of data (YYYY-MM-DD); "
                                                                            "default: the day before the run."),
            "days_back": Param(3, type="integer", minimum=1, maximum=90),
            "start_date": Param(None, type=["null", "string"], description="First day (YYYY-MM-DD): with "
                                                                              "end_date, the range to train on "
                                                                              "(days_back is then ignored)."),
        },
        default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    )
    def training():
        steps(name)

    return training()


def steps(name: str) -> None:
    """The tasks, in order; the workload's name goes to the first steps, and the dataset carries it on."""

    @task
    def plan_days() -> list[str]:
        from batch.pipeline import fail_fast, partition_days

        ctx = get_current_context()
        params = ctx["params"]
        end = params["end_date"] or (ctx["dag_run"].run_after - pendulum.duration(days=1)).date().isoformat()
        return fail_fast(partition_days, end, int(params["days_back"]), params.get("start_date"))

    @task(map_index_template="{{ task.op_kwargs['day'] }}")
    def validate_day(day: str) -> dict:
        from batch.pipeline import fail_fast
        from batch.pipeline import validate_day as step

        return fail_fast(step, day, workload=name)

    @task
    def preprocess(days: list[str], validated: list[dict]) -> dict:
        from batch.pipeline import dataset_key, fail_fast
        from batch.pipeline import preprocess as step

        ctx = get_current_context()
        dag_id, run_id = ctx["dag"].dag_id, ctx["run_id"]
        return fail_fast(step, days, dataset_key(dag_id, run_id), dag_id, run_id, validated=list(validated),
                         workload=name)

    @task
    def tune(dataset: dict) -> dict:
        from batch.pipeline import fail_fast
        from batch.pipeline import tune as step

        return fail_fast(step, dataset)

    @task
    def train_and_register(dataset: dict, tuned: dict) -> dict:
        from batch.pipeline import fail_fast
        from batch.pipeline import train_and_register as step

        return fail_fast(step, dataset, tuned, get_current_context()["run_id"])

    @task
    def evaluate_and_promote(dataset: dict, registered: dict) -> dict:
        from batch.pipeline import evaluate_and_promote as step
        from batch.pipeline import fail_fast

        return fail_fast(step, dataset, registered)

    @task
    def publish(validated: list[dict], dataset: dict, tuned: dict, outcome: dict) -> dict:
        from batch.pipeline import fail_fast
        from batch.pipeline import publish as step

        ctx = get_current_context()
        return fail_fast(step, list(validated), dataset, tuned, outcome, ctx["dag"].dag_id, ctx["run_id"])

    days = plan_days()
    validated = validate_day.expand(day=days)
    dataset = preprocess(days, validated)
    tuned = tune(dataset)
    outcome = evaluate_and_promote(dataset, train_and_register(dataset, tuned))
    publish(validated, dataset, tuned, outcome)


for _name in known():
    batch_training(load(_name))
