"""What a batch_training run covers, and which errors fail its tasks at once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from batch import pipeline
from core.lake import DataError, NoRawData


def test_days_back_or_an_explicit_range():
    assert pipeline.partition_days("2018-01-03", 3) == ["2018-01-01", "2018-01-02", "2018-01-03"]
    assert pipeline.partition_days("2018-01-31", 3, "2018-01-01") == [f"2018-01-{d:02d}" for d in range(1, 32)]
    assert pipeline.partition_days("2018-01-01", 9, "2018-01-01") == ["2018-01-01"]
    with pytest.raises(DataError, match="after end_date"):
        pipeline.partition_days("2018-01-01", 3, "2018-01-02")
    with pytest.raises(DataError, match="at most 366"):
        pipeline.partition_days("2019-12-31", 3, "2018-01-01")


@pytest.fixture
def keep_priority(monkeypatch):
    """fail_fast lowers the CPU priority of the process it runs in: not this test process's."""
    from core.settings import get_settings

    monkeypatch.setenv("LAMBDAML_BATCH__CPU_NICE", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_data_error_fails_at_once_and_anything_else_is_left_to_the_retries(keep_priority):
    def bad_data():
        raise NoRawData("no raw data for this day")

    with pytest.raises(AirflowFailException, match="NoRawData: no raw data for this day"):
        pipeline.fail_fast(bad_data)

    def s3_down():
        raise ConnectionError("S3 did not answer")

    with pytest.raises(ConnectionError):  # a service may come back: Airflow retries it
        pipeline.fail_fast(s3_down)
    assert pipeline.fail_fast(lambda x, y=1: x + y, 1, y=2) == 3


def test_a_retry_keeps_the_verdict_an_earlier_try_recorded():
    test = {"model": {"mae_s": 200.0}, "baseline": {"mae_s": 300.0}, "champion": {"mae_s": 250.0}}
    recorded = {"trials": 4, "test": test, "champion_version": "1.0", "decision": "beats 1.0", "promoted": True}
    assert pipeline.recorded_verdict(recorded) == (True, "beats 1.0", test)
    assert pipeline.recorded_verdict({**recorded, "promoted": False}) == (False, "beats 1.0", test)
    assert pipeline.recorded_verdict({"trials": 4}) is None  # registered, never evaluated
    # Recorded before the verdict was: judged again, as before.
    assert pipeline.recorded_verdict({k: v for k, v in recorded.items() if k != "promoted"}) is None
    assert pipeline.recorded_verdict({**recorded, "promoted": "yes"}) is None


def test_a_task_process_and_what_it_starts_yield_the_cpu():
    """In a process of its own, as an Airflow task: its niceness becomes batch.cpu_nice, and a process it starts
    afterwards (as a Spark JVM or Ray) inherits it; asking for less than it has changes nothing."""
    import subprocess
    import sys

    code = ("import os, subprocess, sys; from batch.pipeline import yield_cpu; from core.settings import get_settings;"
            "s = get_settings(); print(yield_cpu(s), yield_cpu(s.model_copy(update={'batch': s.batch.model_copy("
            "update={'cpu_nice': 3})})), subprocess.run([sys.executable, '-c', 'import os; print(os.nice(0))'],"
            " capture_output=True, text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "LAMBDAML_BATCH__CPU_NICE": "7"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "7", "7"]
