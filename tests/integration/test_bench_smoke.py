"""``python -m bench --smoke``: every registered benchmark runs end to end on the real stack.

Tiny sizes, so no timing is asserted: only that each benchmark ran, wrote its JSON into the
dated result and appears in the markdown table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.registry import BENCHMARKS
from core.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

SMOKE_TIMEOUT_S = 1800  # 9.7 minutes for nine benchmarks at a load average of 4-13 on 2 cores


def test_every_benchmark_runs_and_is_tabled(stack, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

    results = sorted(out.glob("*-smoke.json"))
    tables = sorted(out.glob("*-smoke.md"))
    assert len(results) == 1 and len(tables) == 1, sorted(p.name for p in out.iterdir())
    report = json.loads(results[0].read_text())
    assert report["smoke"] is True
    assert report["machine"]["cpu_count"] and len(report["load_average_after"]) == 3
    entries = {entry["name"]: entry for entry in report["benchmarks"]}
    assert list(entries) == [b.name for b in BENCHMARKS], list(entries)

    table = tables[0].read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    for bench in BENCHMARKS:
        entry = entries[bench.name]
        assert entry["status"] == "ok", (bench.name, entry.get("error"))
        result = entry["result"]
        assert result["name"].startswith(bench.name) and result["measurements"], bench.name
        assert result["summary"], f"{bench.name} wrote no summary line for the table"
        for line in result["summary"]:
            assert line["measured_value"] is not None and line["baseline_value"] is not None, (bench.name, line)
        bench_rows = [r for r in rows if r.startswith(f"| {bench.name} |")]
        assert len(bench_rows) == len(result["summary"]), (bench.name, table)
        assert not any("failed" in r for r in bench_rows), bench_rows
