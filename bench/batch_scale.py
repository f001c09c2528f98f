"""One real month through the batch layer: ``batch_training``'s steps on generated months of growing size.

For each size (default 0.3M, 1M and 3M trips; 100k trips a day is a real TLC yellow month) it
generates ``--days`` daily raw partitions with the platform's generator (3% dirty rows, as the demo)
under a lake prefix of its own, then runs the DAG's steps in the DAG's order with the DAG's arguments
(``batch.pipeline``): ``validate_day`` for every day, ``preprocess``, ``tune``, ``train_and_register``,
``evaluate_and_promote``. ``publish`` is left out: it writes the demo's training-runs table, Hive and
the metrics topic.

- ``--isolation process`` (default): each step runs in a Python process of its own, as an Airflow
  task does, so each starts its own Spark JVM (and ``tune`` a Ray of its own, ``LAMBDAML_RAY__ADDRESS=local``,
  not the stack's head: its processes are then under this one, where their RSS is sampled); the ``validate_day``
  tasks run ``--validate-concurrency`` at a time (16: Airflow's ``max_active_tasks_per_dag``, which
  bounds the mapped tasks of one run in the local stack). ``shared``: every step in this process,
  one Spark session for all (what is left without the per-task start-up).
- The search is the CI-sized one (``RaySettings`` defaults: 4 trials, 8 epochs, grace period 2),
  set explicitly so that a ``LAMBDAML_RAY__*`` of the caller's environment does not change it.

Recorded per size: every step's wall time (and, per step process, the time inside the step function),
the rows in, valid, quarantined and per split, and the peak RSS of every process of the tree under
this one, sampled every ``--sample-interval`` s and grouped by role (``driver``: this process;
``step_python``: a step's process; ``spark_jvm``; ``spark_python_worker``; ``ray_worker``,
``ray_raylet``, ``ray_gcs``, ``ray_other``): per step and role the largest single process, the
largest sum over the role's processes at one moment, and the most processes at once; and the
largest sum over the whole tree. RSS counts shared pages in every process that maps them (Ray's
object store, the JVM's shared libraries), so sums overstate what the machine needs.

Isolation from the demo: raw and derived data live under ``s3a://<bucket>/bench/batch_scale/<days>x<rows>/``,
the days are ``--start`` onwards (September 2024 by default, which no test or demo uses), the model
is registered as ``bench_batch_scale`` (the prediction service follows only ``speed.model_name``),
and the DAG run id is ``bench_batch_scale__<size>__<time>``. The model's versions, its counter and
outbox rows, its artifacts, its announcement (a tombstone) and the Ray Tune folder are removed after
every size; the derived data too. The generated raw days are kept (the next run skips generating
them) unless ``--drop-inputs``.

Run with the stack up (``make stack-up``): ``python -m bench.batch_scale`` (35 minutes on two
cores), or through the runner, where it is opt-in: ``python -m bench --only batch_scale``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import common

NAME = "batch_scale"
MODEL_NAME = "bench_batch_scale"
DAG_ID = "bench_batch_scale"
DEFAULT_SIZES = "0.3M,1M,3M"
DEFAULT_START = dt.date(2024, 9, 1)  # September 2024: 30 days, used by no test, demo or other benchmark
AIRFLOW_MAX_ACTIVE_TASKS_PER_DAG = 16  # Airflow's default, which the local stack keeps: mapped tasks at once
TARGET_ROWS = 3_000_000
TARGET_S = 20 * 60  # issue 20: 3M trips end to end within 20 minutes on the 2-core machine
STEPS = ("validate_day", "preprocess", "tune", "train_and_register", "evaluate_and_promote")
STEP_MARKER = "bench.batch_scale:step"  # in a step process's command line: how the sampler tells it apart
MIB = 2**20


# ------------------------------------------------------------------------------------------------ pure logic

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_size(text: str) -> int:
    """``"0.3M"`` -> 300000, ``"300k"`` -> 300000, ``"4000"`` -> 4000."""
    found = _SIZE.match(text.replace("_", "").replace(",", ""))
    if not found:
        raise typer.BadParameter(f"{text!r} is not a size: a number of trips, optionally with k or M (0.3M, 300k)")
    value = float(found.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[found.group(2).lower()]
    if value < 1 or value != round(value):
        raise typer.BadParameter(f"{text!r} is not a whole, positive number of trips")
    return int(round(value))


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes, ascending and without repeats."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise typer.BadParameter("no sizes given")
    return sorted({parse_size(p) for p in parts})


def size_label(rows: int) -> str:
    """300000 -> ``0.3M``, 1000000 -> ``1M``, 4000 -> ``4k``, 1234 -> ``1234``."""
    if rows >= 100_000:
        return f"{rows / 1e6:g}M"
    if rows >= 1_000 and rows % 100 == 0:
        return f"{rows / 1e3:g}k"
    return str(rows)


def rows_per_day(rows: int, days: int) -> int:
    return max(1, round(rows / days))


def classify(name: str, cmdline: list[str]) -> str:
    """The role of a process of the tree, from its name and command line."""
    text = " ".join(cmdline)
    head = cmdline[0] if cmdline else name
    if head.startswith("ray::") or name.startswith("ray::") or "default_worker.py" in text:
        return "ray_worker"
    if name == "raylet" or head.endswith("/raylet"):
        return "ray_raylet"
    if name.startswith("gcs_server") or head.endswith("/gcs_server"):
        return "ray_gcs"
    if "/ray/" in text and any(k in text for k in ("dashboard", "log_monitor", "monitor.py", "runtime_env", "agent")):
        return "ray_other"
    if name == "java" or head.endswith("/java"):
        return "spark_jvm" if ("org.apache.spark" in text or "pyspark" in text) else "jvm_other"
    if "pyspark.daemon" in text or "pyspark.worker" in text:
        return "spark_python_worker"
    if STEP_MARKER in text:
        return "step_python"
    if name.startswith("python") or os.path.basename(head).startswith("python"):
        return "python_other"
    return "other"


@dataclass
class RolePeak:
    """The largest RSS seen for one role in one phase."""

    max_process: int = 0  # bytes: the largest single process
    max_sum: int = 0  # bytes: the largest sum over the role's processes in one sample
    max_count: int = 0  # the most processes of the role in one sample

    def merge(self, other: RolePeak) -> None:
        self.max_process = max(self.max_process, other.max_process)
        self.max_sum = max(self.max_sum, other.max_sum)
        self.max_count = max(self.max_count, other.max_count)

    def to_json(self) -> dict[str, Any]:
        return {"max_process_mib": round(self.max_process / MIB), "max_sum_mib": round(self.max_sum / MIB),
                "max_processes": self.max_count}


@dataclass
class RssBook:
    """Peak RSS per phase and role, and of the whole tree, from samples of (role, rss bytes)."""

    roles: dict[str, dict[str, RolePeak]] = field(default_factory=dict)
    tree: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    outside_tree: frozenset[str] = frozenset()  # roles recorded but left out of the tree's sum and largest process

    def add(self, phase: str, sample: Iterable[tuple[str, int]]) -> None:
        sums: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        peaks = self.roles.setdefault(phase, {})
        for role, rss in sample:
            peak = peaks.setdefault(role, RolePeak())
            peak.max_process = max(peak.max_process, rss)
            sums[role] += rss
            counts[role] += 1
        for role, total in sums.items():
            peaks[role].max_sum = max(peaks[role].max_sum, total)
            peaks[role].max_count = max(peaks[role].max_count, counts[role])
        total = sum(v for role, v in sums.items() if role not in self.outside_tree)
        self.tree[phase] = max(self.tree.get(phase, 0), total)
        self.samples[phase] = self.samples.get(phase, 0) + 1

    def overall(self, phases: Iterable[str] | None = None) -> dict[str, RolePeak]:
        """Every role's peaks over ``phases`` (all when None)."""
        merged: dict[str, RolePeak] = {}
        for phase, peaks in self.roles.items():
            if phases is not None and phase not in phases:
                continue
            for role, peak in peaks.items():
                merged.setdefault(role, RolePeak()).merge(peak)
        return merged

    def tree_peak(self, phases: Iterable[str] | None = None) -> int:
        return max((v for k, v in self.tree.items() if phases is None or k in phases), default=0)

    def largest_process(self, phases: Iterable[str] | None = None) -> tuple[str | None, int]:
        """(role, bytes) of the single largest process seen."""
        best: tuple[str | None, int] = (None, 0)
        for role, peak in self.overall(phases).items():
            if role not in self.outside_tree and peak.max_process > best[1]:
                best = (role, peak.max_process)
        return best

    def to_json(self) -> dict[str, Any]:
        return {phase: {"tree_mib": round(self.tree[phase] / MIB), "samples": self.samples[phase],
                        "roles": {r: p.to_json() for r, p in sorted(peaks.items())}}
                for phase, peaks in self.roles.items()}


def growth_exponent(rows: list[int], values: list[float]) -> float | None:
    """The slope of log(value) over log(rows) between the two largest sizes: below 1 is less than linear."""
    pairs = [(r, v) for r, v in zip(rows, values) if r > 0 and v and v > 0]
    if len(pairs) < 2:
        return None
    (r1, v1), (r2, v2) = sorted(pairs)[-2:]
    if r1 == r2:
        return None
    return math.log(v2 / v1) / math.log(r2 / r1)


def _mib(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def render_tables(results: list[dict[str, Any]]) -> str:
    """Markdown: step times and rows/s per size, then peak RSS (MiB) per role per size."""
    head = ["| size | trips in | " + " | ".join(STEPS) + " | end to end s | trips/s | tree peak MiB |",
            "|" + "---|" * (len(STEPS) + 5)]
    for r in results:
        steps = r.get("steps", {})
        cells = [_seconds(steps.get(s, {}).get("wall_s")) for s in STEPS]
        rate = "–" if not r.get("rows_per_s") else f"{r['rows_per_s']:,.0f}"
        done = r.get("end_to_end_s") if r.get("status") == "ok" else None
        status = "" if r.get("status") == "ok" else f" ({r.get('status')})"
        head.append(f"| {r['label']}{status} | {r.get('rows_in', 0):,} | " + " | ".join(cells)
                    + f" | {_seconds(done)} | {rate} | {_mib(r.get('tree_peak_mib'))} |")
    roles = sorted({role for r in results for role in r.get("peak_rss_mib", {})})
    memory = ["", "| peak RSS MiB: largest process (sum of the role at once, most processes) | "
              + " | ".join(r["label"] for r in results) + " |", "|---|" + "---|" * len(results)]
    for role in roles:
        cells = []
        for r in results:
            peak = r.get("peak_rss_mib", {}).get(role)
            cells.append("–" if peak is None else
                         f"{peak['max_process_mib']:,} ({peak['max_sum_mib']:,}, {peak['max_processes']})")
        memory.append(f"| {role} | " + " | ".join(cells) + " |")
    return "\n".join(head + memory) + "\n"


def summary_lines(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runner's table: largest size against the smallest, in time and in memory."""
    done = [r for r in results if r.get("status") == "ok"]
    if len(done) < 1:
        return []
    small, large = done[0], done[-1]
    rows = [r["rows_in"] for r in done]
    at_target = [r for r in done if r["rows_generated"] >= TARGET_ROWS]
    lines = [common.comparison(
        f"{large['label']} end to end", large["end_to_end_s"], f"{small['label']} end to end", small["end_to_end_s"],
        "s", higher_is_better=False, target=f"{size_label(TARGET_ROWS)} trips <= {TARGET_S // 60} min",
        met=(at_target[0]["end_to_end_s"] <= TARGET_S) if at_target else None)]
    for label, key in (("tree peak RSS", "tree_peak_mib"), ("largest process RSS", "largest_process_mib")):
        exponent = growth_exponent(rows, [r[key] for r in done])
        lines.append(common.comparison(
            f"{large['label']} {label}", large[key], f"{small['label']} {label}", small[key], "MiB",
            higher_is_better=False, target="grows less than linearly (log-log slope < 1 between the two largest)",
            met=None if exponent is None else exponent < 1.0))
    return lines


# ------------------------------------------------------------------------------------------------- sampling

class RssSampler(threading.Thread):
    """Samples the RSS of this process and all its descendants every ``interval_s`` into an ``RssBook``,
    under the phase set in ``phase``.

    A guard for a shared machine: when the memory available to the whole machine falls below
    ``min_available_bytes``, the descendants are terminated (the step that was running then fails)
    and ``tripped`` says why, before the kernel's OOM killer picks a process, which may be someone else's."""

    def __init__(self, book: RssBook, interval_s: float = 0.5, min_available_bytes: int = 0,
                 root_pid: int | None = None):
        super().__init__(name="rss-sampler", daemon=True)
        self.book = book
        self.root_pid = root_pid or os.getpid()
        self.interval_s = interval_s
        self.min_available_bytes = min_available_bytes
        self.phase = "idle"
        self.tripped: str | None = None
        self.min_seen_available: int | None = None
        self._stop_event = threading.Event()

    def sample_once(self) -> None:
        import psutil

        root = psutil.Process(self.root_pid)
        procs = [root]
        try:
            procs += root.children(recursive=True)
        except psutil.Error:
            pass
        sample = []
        for proc in procs:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    role = "driver" if proc.pid == root.pid else classify(proc.name(), proc.cmdline())
            except psutil.Error:  # gone, or a zombie, between the listing and the read
                continue
            sample.append((role, rss))
        self.book.add(self.phase, sample)
        available = psutil.virtual_memory().available
        if self.min_seen_available is None or available < self.min_seen_available:
            self.min_seen_available = available
        if available < self.min_available_bytes and self.tripped is None:
            self.tripped = (f"memory guard: {available / 2**30:.1f} GiB available on the machine during {self.phase} "
                            f"(< {self.min_available_bytes / 2**30:.1f} GiB, --min-available-gib); this run's "
                            f"{len(procs) - 1} processes were terminated")
            for proc in procs[1:]:
                try:
                    proc.terminate()
                except psutil.Error:
                    pass

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample_once()
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


# ------------------------------------------------------------------------------------------------- the steps

def generator_module():
    from workloads.taxi import generate
    return generate


def step_main(step: str, spec_path: str) -> None:
    """A step process's body: call ``batch.pipeline.<step>`` as the DAG's task does (through ``fail_fast``, at the
    batch layer's CPU priority), write the result."""
    started = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text())
    from batch import pipeline

    pipeline.MODEL_NAME = spec["model_name"]
    session_s = 0.0
    build = pipeline._spark

    def timed_session(*args: Any, **kwargs: Any):
        nonlocal session_s
        t = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            session_s += time.perf_counter() - t

    pipeline._spark = timed_session  # the JVM's start (and the metastore client's) is part of the step's time
    fn = getattr(pipeline, step)
    t0 = time.perf_counter()
    result = pipeline.fail_fast(fn, *spec["args"], **spec["kwargs"])  # as the DAG's task: at batch.cpu_nice
    inner = time.perf_counter() - t0
    Path(spec["result_path"]).write_text(json.dumps({"result": result, "inner_s": inner, "import_s": t0 - started,
                                                     "spark_session_s": session_s}))


class StepFailed(RuntimeError):
    pass


@dataclass
class StepRunner:
    """Runs one step of ``batch.pipeline`` in a process of its own (``process``) or in this one (``shared``)."""

    isolation: str
    model_name: str
    workdir: Path
    env: dict[str, str]
    echo: Callable[[str], None] = print
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, step: str, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, float]]:
        if self.isolation == "shared":
            from batch import pipeline

            before = pipeline.MODEL_NAME
            pipeline.MODEL_NAME = self.model_name
            t0 = time.perf_counter()
            try:
                result = getattr(pipeline, step)(*args, **kwargs)
            finally:
                pipeline.MODEL_NAME = before
            wall = time.perf_counter() - t0
            return result, {"wall_s": wall, "inner_s": wall}
        with self._lock:
            self._count += 1
            n = self._count
        spec_path = self.workdir / f"{n:03d}-{step}.json"
        result_path = self.workdir / f"{n:03d}-{step}.result.json"
        log_path = self.workdir / f"{n:03d}-{step}.log"
        spec_path.write_text(json.dumps({"model_name": self.model_name, "args": list(args), "kwargs": kwargs,
                                         "result_path": str(result_path)}))
        code = ("import sys; from bench.batch_scale import step_main; step_main(sys.argv[1], sys.argv[2])"
                f"  # {STEP_MARKER}")
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run([sys.executable, "-c", code, step, str(spec_path)],
                                  cwd=common.RESULTS_DIR.parent.parent, env=self.env, stdout=log,
                                  stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not result_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise StepFailed(f"{step} exited with {proc.returncode} after {wall:.0f} s; its log {log_path} ends:\n"
                             + "\n".join(tail))
        out = json.loads(result_path.read_text())
        return out["result"], {"wall_s": wall, "inner_s": out["inner_s"], "import_s": out["import_s"],
                               "spark_session_s": out["spark_session_s"]}


def run_size(out: dict[str, Any], rows: int, days: int, start: dt.date, seed: int, validate_concurrency: int,
             runner: StepRunner, sampler: RssSampler, settings, echo: Callable[[str], None]) -> None:
    """Generate one month and run the DAG's steps on it, filling ``out`` with the size's measurements as it goes
    (so that a failure keeps what was measured before it)."""
    from batch.pipeline import dataset_key, partition_days

    per_day = rows_per_day(rows, days)
    label = size_label(rows)
    root = settings.s3.uri("bench", NAME, f"{days}x{per_day}")
    end = start + dt.timedelta(days=days - 1)
    run_id = f"{DAG_ID}__{label}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    out.update({"label": label, "rows_requested": rows, "days": days, "rows_per_day": per_day,
                "rows_generated": per_day * days, "first_day": start.isoformat(), "last_day": end.isoformat(),
                "lake_root": root, "run_id": run_id, "load_average_before": [round(x, 2) for x in os.getloadavg()],
                "steps": {}, "status": "running"})
    echo(f"\n== {label}: {days} days x {per_day:,} trips ({start} .. {end}) under {root}")

    sampler.phase = "generate"
    t0 = time.perf_counter()
    generator_module().generate(settings, start, days, per_day, seed=seed, lake_root=root,
                                echo=lambda line: None)
    out["generate_s"] = round(time.perf_counter() - t0, 2)
    echo(f"  generated (or found) in {out['generate_s']:.1f} s")

    days_list = partition_days(end.isoformat(), days)
    steps = out["steps"]
    try:
        sampler.phase = "validate_day"
        t0 = time.perf_counter()
        concurrency = 1 if runner.isolation == "shared" else max(1, validate_concurrency)
        with ThreadPoolExecutor(concurrency) as pool:
            validated_timed = list(pool.map(lambda d: runner("validate_day", d, lake_root=root), days_list))
        validated = [v for v, _ in validated_timed]
        task_s = sorted(t["wall_s"] for _, t in validated_timed)
        steps["validate_day"] = {"wall_s": round(time.perf_counter() - t0, 2), "tasks": len(task_s),
                                 "concurrency": concurrency, "task_median_s": round(common.median(task_s), 2),
                                 "task_max_s": round(task_s[-1], 2),
                                 "inner_sum_s": round(sum(t["inner_s"] for _, t in validated_timed), 2),
                                 "spark_session_sum_s": round(sum(t.get("spark_session_s", 0.0)
                                                                  for _, t in validated_timed), 2)}
        out.update(rows_in=sum(v["rows_in"] for v in validated), valid=sum(v["valid"] for v in validated),
                   quarantined=sum(v["quarantined"] for v in validated))
        echo(f"  validate_day x {len(task_s)} ({concurrency} at once): {steps['validate_day']['wall_s']:.1f} s, "
             f"{out['rows_in']:,} in, {out['valid']:,} valid, {out['quarantined']:,} quarantined")

        def timed(step: str, *args: Any, **kwargs: Any) -> Any:
            sampler.phase = step
            t0 = time.perf_counter()
            result, times = runner(step, *args, **kwargs)
            steps[step] = {"wall_s": round(time.perf_counter() - t0, 2),
                           **{k: round(v, 2) for k, v in times.items() if k != "wall_s"}}
            echo(f"  {step}: {steps[step]['wall_s']:.1f} s")
            return result

        dataset = timed("preprocess", days_list, dataset_key(DAG_ID, run_id), DAG_ID, run_id, lake_root=root,
                        validated=validated)
        out["split_rows"] = dataset["rows"]
        tuned = timed("tune", dataset)
        out["tune"] = {"trials": tuned["trials"], tuned["metric"]: round(tuned["best_val"], 2),
                       "best_config": tuned["config"]}
        registered = timed("train_and_register", dataset, tuned, run_id)
        outcome = timed("evaluate_and_promote", dataset, registered)
        out["evaluate"] = {"version": outcome["version"], "promoted": outcome["promoted"], "reason": outcome["reason"],
                           "test_mae_s": round(outcome["test"]["model"]["mae_s"], 2),
                           "baseline_mae_s": round(outcome["test"]["baseline"]["mae_s"], 2)}
        out["status"] = "ok"
    except BaseException as exc:
        out["status"] = f"failed: {type(exc).__name__}"
        out["error"] = str(exc)[-4000:]
        raise
    finally:
        sampler.phase = "idle"
        out["end_to_end_s"] = round(sum(s["wall_s"] for s in steps.values()), 2)
        out["rows_per_s"] = round(out.get("rows_in", 0) / out["end_to_end_s"]) if out["end_to_end_s"] else None
        out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]


def measure_memory(out: dict[str, Any], book: RssBook) -> None:
    """Move one size's RSS peaks from ``book`` into its result."""
    phases = [s for s in STEPS if s in book.roles]
    out["peak_rss_mib"] = {r: p.to_json() for r, p in sorted(book.overall(phases).items())}
    out["tree_peak_mib"] = round(book.tree_peak(phases) / MIB)
    role, largest = book.largest_process(phases)
    out["largest_process_mib"], out["largest_process_role"] = round(largest / MIB), role
    out["rss_by_step"] = {k: v for k, v in book.to_json().items() if k in STEPS}
    if "generate" in book.roles:
        out["generate_peak_rss_mib"] = round(book.tree_peak(["generate"]) / MIB)


# ------------------------------------------------------------------------------------------------- clean-up

def remove_model(settings, model_name: str) -> None:
    """The bench model's index rows, artifacts and announcement, as if it never was."""
    from sqlalchemy import text

    from core import kafka
    from core.db import engine
    from core.s3 import delete_prefix

    eng = engine(settings)
    try:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM model_versions WHERE name = :n"), {"n": model_name})
            conn.execute(text("DELETE FROM model_version_counters WHERE name = :n"), {"n": model_name})
            conn.execute(text("DELETE FROM model_announcements_outbox WHERE msg_key = :n"), {"n": model_name})
    finally:
        eng.dispose()
    delete_prefix(settings, settings.s3.uri("models", model_name))
    producer = kafka.producer(settings)  # a tombstone: the compacted models topic forgets the key
    producer.produce(settings.kafka.models_topic, key=model_name.encode(), value=None)
    producer.flush(30)


def remove_derived(settings, root: str, run_id: str) -> None:
    import shutil

    from batch.pipeline import dataset_key
    from core.s3 import delete_prefix

    for folder in ("validated", "quarantine", "features"):
        delete_prefix(settings, f"{root}/{folder}")
    shutil.rmtree(settings.runtime_dir / "ray" / dataset_key(DAG_ID, run_id).rsplit("/", 1)[-1], ignore_errors=True)


# ------------------------------------------------------------------------------------------------------- CLI

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    sizes: Annotated[str, typer.Option(help="Trips per month, comma-separated, k/M allowed; run ascending.")]
    = DEFAULT_SIZES,
    days: Annotated[int, typer.Option(min=1, max=90, help="Days in each month; trips/day = size / days.")] = 30,
    start: Annotated[str, typer.Option(help="First pickup day (YYYY-MM-DD).")] = DEFAULT_START.isoformat(),
    isolation: Annotated[str, typer.Option(help="process: a process per step, as Airflow runs tasks; "
                                                "shared: every step in this process.")] = "process",
    validate_concurrency: Annotated[int, typer.Option(
        help="validate_day tasks at once with --isolation process (Airflow's max_active_tasks_per_dag).")]
    = AIRFLOW_MAX_ACTIVE_TASKS_PER_DAG,
    num_samples: Annotated[int | None, typer.Option(help="Trials (default: RaySettings', the CI size).")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Epochs (default: RaySettings', the CI size).")] = None,
    grace_period: Annotated[int | None, typer.Option(help="ASHA grace period (default: RaySettings').")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    sample_interval: Annotated[float, typer.Option(help="Seconds between RSS samples.")] = 0.5,
    min_available_gib: Annotated[float, typer.Option(
        help="Stop the run's processes when the machine has less memory available than this (0: never).")] = 1.5,
    drop_inputs: Annotated[bool, typer.Option("--drop-inputs", help="Also delete the generated raw days at the "
                                                                   "end (kept by default for the next run).")] = False,
    name: Annotated[str | None, typer.Option(help="Result file name without .json (default: "
                                                  "<date>-<machine>-batch_scale).")] = None,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Run batch_training's steps on generated months of each size; time every step, sample every process's RSS."""
    from bench.runner import describe_machine, machine_tag
    from core.settings import RaySettings, get_settings

    if isolation not in ("process", "shared"):
        raise typer.BadParameter("--isolation is process or shared")
    chosen = parse_sizes(sizes)
    first = dt.date.fromisoformat(start)
    defaults = RaySettings()
    search = {"NUM_SAMPLES": num_samples or defaults.num_samples, "MAX_EPOCHS": max_epochs or defaults.max_epochs,
              "GRACE_PERIOD": grace_period or defaults.grace_period,
              "ADDRESS": "local"}  # a Ray of its own under this process, so that its RSS is sampled with the rest
    for key, value in search.items():
        os.environ[f"LAMBDAML_RAY__{key}"] = str(value)
    get_settings.cache_clear()
    settings = get_settings()
    typer.echo(f"sizes {', '.join(size_label(s) for s in chosen)} over {days} days from {first}; isolation "
               f"{isolation}; validate_day {validate_concurrency} at once; search {search['NUM_SAMPLES']} trials x "
               f"{search['MAX_EPOCHS']} epochs (grace {search['GRACE_PERIOD']}); model {MODEL_NAME}")

    results: list[dict[str, Any]] = []
    failure: BaseException | None = None
    started = time.monotonic()
    logs = settings.runtime_dir / "bench" / NAME / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    typer.echo(f"step logs: {logs}")
    for rows in chosen:
        # In process mode this process only starts the steps, as Airflow's scheduler does: not the DAG's memory.
        book = RssBook(outside_tree=frozenset({"driver"}) if isolation == "process" else frozenset())
        sampler = RssSampler(book, sample_interval, int(min_available_gib * 2**30))
        sampler.start()
        runner = StepRunner(isolation, MODEL_NAME, logs / size_label(rows), dict(os.environ), echo=typer.echo)
        runner.workdir.mkdir(exist_ok=True)
        result: dict[str, Any] = {"label": size_label(rows), "rows_requested": rows, "status": "not started"}
        try:
            remove_model(settings, MODEL_NAME)  # no champion left from an earlier size or run
            run_size(result, rows, days, first, seed, validate_concurrency, runner, sampler, settings, typer.echo)
        except Exception as exc:  # noqa: BLE001 - recorded; the larger sizes are not tried
            failure = exc
            typer.echo(f"  {size_label(rows)} failed: {type(exc).__name__}: {exc}", err=True)
        except KeyboardInterrupt as exc:
            failure = exc
        finally:
            sampler.stop()
            if failure is not None and result["status"] in ("not started", "running"):
                result["status"] = f"failed: {type(failure).__name__}"
                result["error"] = str(failure)[-4000:]
            if sampler.tripped:
                result["status"], result["memory_guard"] = "failed: memory guard", sampler.tripped
                typer.echo(f"  {sampler.tripped}", err=True)
            if sampler.min_seen_available is not None:
                result["min_available_gib"] = round(sampler.min_seen_available / 2**30, 2)
            measure_memory(result, book)
            results.append(result)
            try:
                remove_model(settings, MODEL_NAME)
                if "lake_root" in result:
                    remove_derived(settings, result["lake_root"], result["run_id"])
                    if drop_inputs:
                        from core.s3 import delete_prefix

                        delete_prefix(settings, result["lake_root"])
            except Exception as exc:  # noqa: BLE001 - a failed clean-up must not hide the measurement
                typer.echo(f"  clean-up after {size_label(rows)} failed: {exc}", err=True)
        if failure is not None:
            break

    done = [r for r in results if r.get("status") == "ok"]
    rows_in = [r["rows_in"] for r in done]
    measurements = {
        "sizes": results,
        "tree_peak_growth_exponent": growth_exponent(rows_in, [r["tree_peak_mib"] for r in done]),
        "largest_process_growth_exponent": growth_exponent(rows_in, [r["largest_process_mib"] for r in done]),
        "end_to_end_growth_exponent": growth_exponent(rows_in, [r["end_to_end_s"] for r in done]),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    typer.echo("\n" + render_tables(results))
    # Only now: the machine's description imports torch, which this process need not hold while it samples.
    name = name or f"{dt.date.today().isoformat()}-{machine_tag(describe_machine())}-{NAME}"
    common.write_result(
        name,
        parameters={"sizes": chosen, "days": days, "start": first.isoformat(), "isolation": isolation,
                    "validate_concurrency": validate_concurrency, "search": search, "seed": seed,
                    "dirty_share": 0.03, "sample_interval_s": sample_interval, "model_name": MODEL_NAME,
                    "min_available_gib": min_available_gib,
                    "spark_master": settings.spark.master, "spark_driver_memory": settings.spark.driver_memory,
                    "ray_num_cpus": settings.ray.num_cpus, "target": f"{TARGET_ROWS:,} trips <= {TARGET_S} s"},
        measurements=measurements,
        ratios={},
        echo=lambda line: None,
        summary=summary_lines(results),
        out=out,
    )
    typer.echo(f"written: {(out or common.RESULTS_DIR) / (name + '.json')}")
    if failure is not None:
        raise typer.Exit(130 if isinstance(failure, KeyboardInterrupt) else 1)


if __name__ == "__main__":
    app()
