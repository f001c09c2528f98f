"""What every benchmark shares: timing, the machine description and the JSON result file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CACHE_DIR = Path.home() / ".cache" / "lambdaml" / "bench"
T = TypeVar("T")


def timed_rounds(runs: dict[str, Callable[[], None]], warmup: int, repeats: int,
                 before: Callable[[str], None] | None = None,
                 echo: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Wall seconds of each run over ``repeats`` timed rounds after ``warmup`` untimed ones.

    Every round calls every run once, in turn, so that JIT warm-up and the load of a shared
    machine fall on all of them alike. ``before(name)`` runs untimed before each call.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + repeats):
        kind = "warm-up" if i < warmup else f"round {i - warmup + 1}/{repeats}"
        for name, run in runs.items():
            if before:
                before(name)
            t0 = time.perf_counter()
            run()
            elapsed = time.perf_counter() - t0
            echo(f"  {kind} {name}: {elapsed:.2f} s")
            if i >= warmup:
                seconds[name].append(elapsed)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_run(runs: list[T], key: Callable[[T], float]) -> T:
    """The run whose ``key`` is the median (the lower middle one of an even count): a whole measured run, not a
    mix of figures from several."""
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


OUT_HELP = "Folder for the JSON result (default: bench/results)."


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Where the numbers were taken."""
    import torch

    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pyspark": _version("pyspark"),
        "duckdb": _version("duckdb"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15m": [round(x, 2) for x in os.getloadavg()],
    }


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def comparison(measured: str, measured_value: float | None, baseline: str, baseline_value: float | None,
               unit: str, higher_is_better: bool, target: str | None = None,
               met: bool | None = None) -> dict[str, Any]:
    """One line of the summary table: a measured line against its baseline.

    ``ratio`` is always measured / baseline; ``higher_is_better`` says which direction of the
    ratio is the better one (True for rates, False for seconds and latencies). ``target`` is the
    goal in words (``"ratio >= 0.8"``, ``"p99 <= floor + 3 ms"``), ``met`` whether it was reached;
    both are None where the benchmark only reports.
    """
    ratio = (measured_value / baseline_value
             if measured_value is not None and baseline_value not in (None, 0) else None)
    return {"measured": measured, "measured_value": _round(measured_value), "baseline": baseline,
            "baseline_value": _round(baseline_value), "unit": unit,
            "ratio": None if ratio is None else round(ratio, 4), "higher_is_better": higher_is_better,
            "target": target, "met": met}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def write_result(name: str, parameters: dict[str, Any], measurements: dict[str, Any],
                 ratios: dict[str, float], echo: Callable[[str], None] = print,
                 summary: list[dict[str, Any]] | None = None, out: Path | None = None) -> Path:
    """Write ``<out>/<name>.json`` (default ``bench/results/``) and print a short summary.

    ``summary`` holds the ``comparison`` lines that ``python -m bench`` puts in its table.
    """
    host = machine()
    result = {
        "name": name,
        "timestamp_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": host,
        "git_sha": git_sha(),
        "parameters": parameters,
        "measurements": measurements,
        "ratios": ratios,
        "summary": summary or [],
    }
    out = out or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    echo(f"\n== {name} ==")
    echo(f"machine: {host['cpu_count']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
         f"GPU: {host['gpu'] or 'none'}")
    for key, value in measurements.items():
        echo(f"  {key}: {json.dumps(value)}")
    for key, value in ratios.items():
        echo(f"  {key}: {value:.3f}")
    for line in summary or []:
        ratio = "-" if line["ratio"] is None else f"{line['ratio']:.3f}"
        echo(f"  {line['measured']} / {line['baseline']}: {ratio}"
             + (f" (target {line['target']}: {'met' if line['met'] else 'not met'})" if line["target"] else ""))
    echo(f"written: {path}")
    return path
