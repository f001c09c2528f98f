from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
    )


def test_help_lists_the_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("stack", "install", "migrate", "config"):
        assert command in out.stdout
    stack = run_cli("stack", "--help")
    for command in ("up", "status", "down"):
        assert command in stack.stdout


def test_invalid_setting_is_reported_by_its_variable_name():
    out = run_cli("config", "show", LAMBDAML_MYSQL__PORT="abc")
    assert out.returncode == 2
    assert "LAMBDAML_MYSQL__PORT" in out.stderr


def test_config_show_masks_secrets():
    out = run_cli("config", "show", LAMBDAML_MYSQL__PASSWORD="very-secret-pw")
    assert out.returncode == 0
    assert "very-secret-pw" not in out.stdout
    assert '"port": 13306' in out.stdout


def test_generate_writes_the_named_workloads_raw_partitions_and_refuses_an_unknown_one(tmp_path):
    out = run_cli("generate", "--workload", "bike", "--days", "2", "--rows-per-day", "50", "--start", "2024-06-01",
                  "--lake-root", str(tmp_path))
    assert out.returncode == 0, out.stderr
    days = sorted(p.name for p in (tmp_path / "raw" / "bike").iterdir())
    assert days == ["start_date=2024-06-01", "start_date=2024-06-02"]
    unknown = run_cli("generate", "--workload", "boat", "--lake-root", str(tmp_path))
    assert unknown.returncode == 2 and "no such workload: 'boat'" in unknown.stderr and "bike" in unknown.stderr


def test_analyst_queries_are_the_platforms_and_each_workloads_by_name():
    from core.cli import analyst_queries

    queries = analyst_queries()
    assert {"recent_error_by_zone", "drift_history", "bike.live_error_by_station"} <= set(queries)
    assert queries["bike.live_error_by_station"].parent.parts[-3:] == ("workloads", "bike", "queries")
    assert all(".." not in name and "/" not in name for name in queries)  # names, never paths
    bike = queries["bike.live_error_by_station"].read_text()
    assert "FROM bike_hourly" in bike and ":since" in bike and ":station" in bike
