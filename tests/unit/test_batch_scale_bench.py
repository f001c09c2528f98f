"""The pure parts of the month-scale benchmark (``bench/batch_scale.py``): sizes, roles, RSS peaks, tables."""

from __future__ import annotations

import time

import pytest
import typer
from typer.testing import CliRunner

from bench import batch_scale as bs
from bench import runner
from bench.registry import BENCHMARKS, OPT_IN

MIB = 2**20


def test_sizes_parse_with_units_and_run_ascending() -> None:
    assert bs.parse_size("0.3M") == 300_000
    assert bs.parse_size("300k") == 300_000
    assert bs.parse_size("3_000_000") == 3_000_000
    assert bs.parse_size(" 4000 ") == 4_000
    assert bs.parse_sizes("3M,0.3M,1M,1m") == [300_000, 1_000_000, 3_000_000]
    for bad in ("", "abc", "0", "1.5", "-1M", "2G"):
        with pytest.raises(typer.BadParameter):
            bs.parse_sizes(bad) if bad == "" else bs.parse_size(bad)


def test_size_labels_and_days() -> None:
    assert [bs.size_label(n) for n in (300_000, 1_000_000, 3_000_000, 4_000, 1_234)] == ["0.3M", "1M", "3M", "4k",
                                                                                          "1234"]
    assert bs.rows_per_day(1_000_000, 30) == 33_333
    assert bs.rows_per_day(3_000_000, 30) == 100_000
    assert bs.rows_per_day(5, 30) == 1


@pytest.mark.parametrize(("name", "cmdline", "role"), [
    ("java", ["/usr/lib/jvm/java-17/bin/java", "-cp", "x", "org.apache.spark.deploy.SparkSubmit", "pyspark-shell"],
     "spark_jvm"),
    ("java", ["/usr/bin/java", "-Xmx512m", "kafka.Kafka"], "jvm_other"),
    ("python3", ["/usr/bin/python3", "-m", "pyspark.daemon", "pyspark.worker"], "spark_python_worker"),
    ("ray::ImplicitFunc.train", ["ray::ImplicitFunc.train"], "ray_worker"),
    ("python", [".venv/bin/python", "/x/site-packages/ray/_private/workers/default_worker.py", "--node-ip-address"],
     "ray_worker"),
    ("raylet", ["/x/site-packages/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=x"], "ray_raylet"),
    ("gcs_server", ["/x/site-packages/ray/core/src/ray/gcs/gcs_server", "--port=1"], "ray_gcs"),
    ("python", [".venv/bin/python", "-u", "/x/site-packages/ray/_private/log_monitor.py"], "ray_other"),
    ("python", [".venv/bin/python", "-c", f"from bench.batch_scale import step_main  # {bs.STEP_MARKER}", "tune"],
     "step_python"),
    ("python3.11", ["/usr/bin/python3.11", "x.py"], "python_other"),
    ("bash", ["bash", "spark-class"], "other"),
])
def test_processes_are_classified_by_role(name: str, cmdline: list[str], role: str) -> None:
    assert bs.classify(name, cmdline) == role


def test_rss_book_keeps_per_phase_and_role_peaks() -> None:
    book = bs.RssBook()
    book.add("validate_day", [("driver", 100 * MIB), ("spark_jvm", 500 * MIB), ("spark_jvm", 600 * MIB)])
    book.add("validate_day", [("driver", 120 * MIB), ("spark_jvm", 700 * MIB)])
    book.add("tune", [("driver", 90 * MIB), ("ray_worker", 300 * MIB), ("ray_worker", 300 * MIB),
                      ("ray_worker", 200 * MIB)])
    jvm = book.roles["validate_day"]["spark_jvm"]
    assert (jvm.max_process, jvm.max_sum, jvm.max_count) == (700 * MIB, 1100 * MIB, 2)
    assert book.tree == {"validate_day": 1200 * MIB, "tune": 890 * MIB}
    assert book.samples == {"validate_day": 2, "tune": 1}
    overall = book.overall()
    assert overall["driver"].max_process == 120 * MIB and overall["ray_worker"].max_sum == 800 * MIB
    assert overall["ray_worker"].max_count == 3
    assert book.tree_peak() == 1200 * MIB and book.tree_peak(["tune"]) == 890 * MIB
    assert book.largest_process() == ("spark_jvm", 700 * MIB)
    assert book.largest_process(["tune"]) == ("ray_worker", 300 * MIB)
    assert set(book.overall(["tune"])) == {"driver", "ray_worker"}
    as_json = book.to_json()
    assert as_json["tune"]["tree_mib"] == 890
    assert as_json["validate_day"]["roles"]["spark_jvm"] == {"max_process_mib": 700, "max_sum_mib": 1100,
                                                            "max_processes": 2}


def test_roles_outside_the_tree_are_recorded_but_not_summed() -> None:
    book = bs.RssBook(outside_tree=frozenset({"driver"}))
    book.add("tune", [("driver", 900 * MIB), ("step_python", 500 * MIB), ("ray_worker", 400 * MIB)])
    assert book.tree["tune"] == 900 * MIB
    assert book.largest_process() == ("step_python", 500 * MIB)
    assert book.roles["tune"]["driver"].max_process == 900 * MIB


def test_memory_of_a_size_comes_from_its_steps_only() -> None:
    book = bs.RssBook()
    book.add("generate", [("driver", 4000 * MIB)])
    book.add("preprocess", [("driver", 100 * MIB), ("spark_jvm", 900 * MIB)])
    out: dict = {}
    bs.measure_memory(out, book)
    assert out["tree_peak_mib"] == 1000 and out["largest_process_mib"] == 900
    assert out["largest_process_role"] == "spark_jvm" and out["generate_peak_rss_mib"] == 4000
    assert set(out["rss_by_step"]) == {"preprocess"}


def test_growth_exponent_is_the_log_log_slope_of_the_two_largest() -> None:
    assert bs.growth_exponent([1, 10, 100], [5, 50, 500]) == pytest.approx(1.0)
    assert bs.growth_exponent([300_000, 1_000_000, 3_000_000], [1000, 1500, 2000]) == pytest.approx(
        0.2619, abs=1e-3)
    assert bs.growth_exponent([10], [1.0]) is None
    assert bs.growth_exponent([10, 20], [1.0, None]) is None


def _size(label: str, rows: int, seconds: float, tree: int, largest: int, status: str = "ok") -> dict:
    return {"label": label, "rows_in": rows, "rows_generated": rows, "status": status, "end_to_end_s": seconds,
            "rows_per_s": rows / seconds, "tree_peak_mib": tree, "largest_process_mib": largest,
            "steps": {s: {"wall_s": seconds / len(bs.STEPS)} for s in bs.STEPS},
            "peak_rss_mib": {"spark_jvm": {"max_process_mib": largest, "max_sum_mib": 2 * largest,
                                           "max_processes": 2}}}


def test_tables_show_every_step_and_role_per_size() -> None:
    results = [_size("0.3M", 300_000, 300.0, 3000, 1000), _size("1M", 1_000_000, 600.0, 3500, 1400),
               {"label": "3M", "rows_in": 0, "status": "failed: StepFailed",
                "steps": {"validate_day": {"wall_s": 9.0}}}]
    table = bs.render_tables(results)
    lines = table.splitlines()
    assert lines[0].startswith("| size | trips in | validate_day | preprocess | tune |")
    assert "| 0.3M | 300,000 | 60.0 |" in table and "| 1,000 |" in table
    assert "| 3M (failed: StepFailed) | 0 | 9.0 | – |" in table
    assert "| spark_jvm | 1,000 (2,000, 2) | 1,400 (2,800, 2) | – |" in table


def test_summary_checks_the_targets_on_the_largest_size() -> None:
    fast = [_size("0.3M", 300_000, 300.0, 3000, 1000), _size("3M", 3_000_000, 1100.0, 4000, 2000)]
    time_line, tree_line, largest_line = bs.summary_lines(fast)
    assert time_line["measured_value"] == 1100.0 and time_line["met"] is True
    assert tree_line["met"] is True and largest_line["ratio"] == 2.0
    slow = [_size("0.3M", 300_000, 300.0, 300, 100), _size("3M", 3_000_000, 1300.0, 3100, 1100)]
    time_line, tree_line, largest_line = bs.summary_lines(slow)
    assert time_line["met"] is False and tree_line["met"] is False and largest_line["met"] is False
    small_only = bs.summary_lines([_size("4k", 4_000, 60.0, 2000, 800)])
    assert small_only[0]["met"] is None and small_only[1]["met"] is None
    assert bs.summary_lines([]) == []


def test_batch_scale_is_opt_in_for_the_runner() -> None:
    assert "batch_scale" not in [b.name for b in BENCHMARKS]
    assert [b.name for b in OPT_IN] == ["batch_scale"] and all(b.smoke for b in OPT_IN)
    assert runner.select(BENCHMARKS, None, OPT_IN) == list(BENCHMARKS)
    assert [b.name for b in runner.select(BENCHMARKS, ["batch_scale", BENCHMARKS[0].name], OPT_IN)] == \
        [BENCHMARKS[0].name, "batch_scale"]


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(bs.app, ["--help"])
    assert result.exit_code == 0
    for option in ("--sizes", "--days", "--isolation", "--validate-concurrency", "--out"):
        assert option in result.output


def test_a_step_process_calls_the_pipeline_step_under_the_bench_model(tmp_path, monkeypatch) -> None:
    import json

    from batch import pipeline

    # step_main rebinds these two in its own process; put them back after the test.
    monkeypatch.setattr(pipeline, "MODEL_NAME", pipeline.MODEL_NAME)
    monkeypatch.setattr(pipeline, "_spark", lambda settings, step: time.sleep(0.05) or f"session {step}")
    seen = {}

    def fake_validate_day(day: str, lake_root: str | None = None) -> dict:
        seen.update(day=day, lake_root=lake_root, model=pipeline.MODEL_NAME, session=pipeline._spark(None, "validate"))
        return {"day": day, "rows_in": 3}

    monkeypatch.setattr(pipeline, "validate_day", fake_validate_day)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model_name": bs.MODEL_NAME, "args": ["2024-09-01"], "kwargs": {"lake_root": "s3a://x"},
                                "result_path": str(tmp_path / "result.json")}))
    bs.step_main("validate_day", str(spec))
    out = json.loads((tmp_path / "result.json").read_text())
    assert out["result"] == {"day": "2024-09-01", "rows_in": 3}
    assert seen == {"day": "2024-09-01", "lake_root": "s3a://x", "model": bs.MODEL_NAME, "session": "session validate"}
    assert out["spark_session_s"] >= 0.05 and out["inner_s"] >= out["spark_session_s"]


def test_the_memory_guard_stops_the_runs_own_processes(monkeypatch) -> None:
    import subprocess
    import sys
    from types import SimpleNamespace

    import psutil

    # A stand-in for the benchmark's process with one child; only that child may be terminated.
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                                                     "'import time; time.sleep(60)'])"])
    try:
        deadline = time.monotonic() + 20
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        book = bs.RssBook()
        sampler = bs.RssSampler(book, min_available_bytes=2 * 2**30, root_pid=parent.pid)
        sampler.phase = "validate_day"
        monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=2**30))
        sampler.sample_once()
        assert sampler.tripped and "during validate_day" in sampler.tripped
        assert parent.wait(10) == 0  # its child was terminated, so it finished
        assert sampler.min_seen_available == 2**30
        assert book.roles["validate_day"]["driver"].max_count == 1
        assert book.roles["validate_day"]["python_other"].max_count == 1
    finally:
        if parent.poll() is None:
            parent.kill()
