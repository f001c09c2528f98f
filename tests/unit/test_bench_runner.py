"""The benchmark runner's pure parts: machine tag, file names, selection, comparison lines and the table."""

from __future__ import annotations

import datetime as dt

import pytest
import typer

from bench import common, runner
from bench.registry import BENCHMARKS


def _report(entries: list[dict]) -> dict:
    return {"date": "2026-11-23", "machine_tag": "x86_64-2cpu-24g", "smoke": False, "git_sha": "abc",
            "git_dirty": False,
            "machine": {"cpu_model": "AMD EPYC", "cpu_count": 2, "memory_gib": 23.5, "gpu": None, "platform": "Linux"},
            "started_utc": "2026-11-23T18:00:00+00:00", "finished_utc": "2026-11-23T18:20:00+00:00",
            "elapsed_s": 1200.0, "load_average_before": [1.0, 2.0, 3.0], "load_average_after": [4.0, 5.0, 6.0],
            "benchmarks": entries}


def test_machine_tag_is_short_and_hostname_free() -> None:
    assert runner.machine_tag({"arch": "x86_64", "cpu_count": 2, "memory_gib": 23.5, "gpu": None}) == "x86_64-2cpu-24g"
    assert runner.machine_tag({"arch": "aarch64", "cpu_count": 8, "memory_gib": 64.0, "gpu": "H100"}) \
        == "aarch64-8cpu-64g-gpu"


def test_smoke_and_partial_runs_never_take_the_full_runs_name() -> None:
    day = dt.date(2026, 11, 23)
    assert runner.result_stem(day, "x86_64-2cpu-24g", False, None) == "2026-11-23-x86_64-2cpu-24g"
    assert runner.result_stem(day, "t", True, None) == "2026-11-23-t-smoke"
    assert runner.result_stem(day, "t", False, ["endpoint", "stream"]) == "2026-11-23-t-endpoint+stream"


def test_select_keeps_registry_order_and_rejects_unknown_names() -> None:
    names = [b.name for b in BENCHMARKS]
    assert [b.name for b in runner.select(BENCHMARKS, [names[-1], names[0]])] == [names[0], names[-1]]
    assert runner.select(BENCHMARKS, None) == list(BENCHMARKS)
    with pytest.raises(typer.BadParameter, match="unknown benchmark"):
        runner.select(BENCHMARKS, ["no_such_bench"])


def test_registry_names_are_unique_modules() -> None:
    names = [b.name for b in BENCHMARKS]
    assert len(names) == len(set(names))
    assert all(b.smoke for b in BENCHMARKS), "every benchmark needs smoke options"


def test_comparison_ratio_is_measured_over_baseline() -> None:
    line = common.comparison("a", 5.0, "b", 2.0, "s", higher_is_better=False, target="reported")
    assert line["ratio"] == 2.5 and line["met"] is None
    assert common.comparison("a", 1.0, "b", 0.0, "s", higher_is_better=True)["ratio"] is None
    assert common.comparison("a", None, "b", 1.0, "s", higher_is_better=True)["ratio"] is None


def test_table_lists_every_comparison_and_failures() -> None:
    ok = {"name": "mysql_sync", "status": "ok", "elapsed_s": 30.0, "result": {"summary": [
        common.comparison("bulk_upsert", 65_000.0, "load_data", 100_000.0, "rows/s", True, "ratio >= 0.65", True),
        common.comparison("bulk_upsert", 65_000.0, "single_row", 1_000.0, "rows/s", True, "ratio >= 10", True)]}}
    failed = {"name": "stream", "status": "exit 1", "elapsed_s": 12.0, "error": ["...", "RuntimeError: no Kafka"]}
    table = runner.render_markdown(_report([ok, failed]))
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    assert rows[0] == ("| mysql_sync | bulk_upsert: 65,000 rows/s | load_data: 100,000 rows/s | 0.65 | higher "
                       "| ratio >= 0.65 | yes |")
    assert rows[1].startswith("| mysql_sync | bulk_upsert: 65,000 rows/s | single_row: 1,000 rows/s | 65.0 |")
    assert rows[2].startswith("| stream | **failed** (exit 1, 12 s): RuntimeError: no Kafka |")
    assert "Failed: stream" in table
    assert "before 1.0 / 2.0 / 3.0, after 4.0 / 5.0 / 6.0" in table


def test_failure_reason_is_the_exception_with_its_wrapped_lines() -> None:
    lines = ["  round 1/2 tune: 335.20 s", "╰────╯", "Exception: The current node timed out during startup. This could",
             "some of the raylet failed to startup."]
    assert runner.failure_reason(lines) == ("Exception: The current node timed out during startup. This could "
                                            "some of the raylet failed to startup.")
    assert runner.failure_reason(["last words"]) == "last words"
