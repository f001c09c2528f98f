"""Airflow: the real standalone Airflow parses the project's DAGs and runs one."""

from __future__ import annotations

from tests.airflow_api import AirflowAPI


def test_running_airflow_has_the_project_dags_without_import_errors(stack, settings):
    api = AirflowAPI(settings)
    api.wait_for_dag("platform_health")
    api.wait_for_dag("batch_training")
    assert api.call("GET", "/api/v2/importErrors")["total_entries"] == 0


def test_platform_health_dag_runs_green(stack, settings):
    """Triggered through the API, the scheduler runs every task against the live services."""
    api = AirflowAPI(settings)
    run = api.run_dag("platform_health", timeout=300)
    assert run["state"] == "success", api.failed_tasks("platform_health", run["dag_run_id"])
