"""Every DAG file parses with no import errors and opens no connection while parsing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def dagbag(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    attempts: list[tuple] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise AssertionError(f"a DAG file opened a connection to {address} while parsing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    bag.connection_attempts = attempts
    return bag


def test_dag_files_import_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(list(DAGS.glob("*.py")))


def test_no_connection_while_parsing(dagbag):
    assert dagbag.connection_attempts == []


def test_dags_have_fixed_start_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_hive_archive_runs_daily_for_yesterday_then_applies_retention(dagbag):
    dag = dagbag.dags["hive_archive"]
    assert dag.params["day"] is None and dag.params["view"] == "zone_hour_stats"
    assert dag.max_active_runs == 1
    assert dag.task_dict["archive_day"].downstream_task_ids == {"apply_retention"}
    assert dag.timetable.summary == "0 7 * * *"
