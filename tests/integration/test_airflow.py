"""Airflow: the real standalone Airflow parses the project's DAGs and runs one."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request


def _token(settings) -> str:
    a = settings.airflow
    body = json.dumps({"username": a.admin_user, "password": a.admin_password.get_secret_value()}).encode()
    req = urllib.request.Request(f"{a.url}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["access_token"]


def _get(settings, path: str) -> dict:
    req = urllib.request.Request(f"{settings.airflow.url}{path}", headers={"Authorization": f"Bearer {_token(settings)}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_running_airflow_has_the_project_dags_without_import_errors(stack, settings):
    import time

    deadline = time.monotonic() + 120
    dag_ids: set[str] = set()
    while time.monotonic() < deadline:
        dag_ids = {d["dag_id"] for d in _get(settings, "/api/v2/dags?limit=100")["dags"]}
        if "platform_health" in dag_ids:
            break
        time.sleep(3)
    assert "platform_health" in dag_ids
    assert _get(settings, "/api/v2/importErrors")["total_entries"] == 0


def test_platform_health_dag_runs_green(stack, settings):
    """`airflow dags test` runs every task of the DAG against the live services."""
    from deploy.local.services import airflow_env

    airflow = f"{sys.prefix}/bin/airflow"
    result = subprocess.run(
        [airflow, "dags", "test", "platform_health"],
        env=airflow_env(settings), capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "state=success" in output or "DagRunState.SUCCESS" in output, output[-4000:]
