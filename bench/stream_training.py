"""The stream's latency while ``batch_training`` runs on the same cores, and what the batch layer's priority buys.

The Lambda architecture runs its batch and speed layers at once. On a small machine a training (Spark JVMs, Ray
workers, torch) can take every core, and the speed layer's latency with them: on 2026-12-03 the dashboard showed
event-to-score p50 of 8.1 s during a training run.

One private speed layer, as ``bench.stream`` builds it (topics, runtime folder, port and a served model of its own:
``bench.endpoint.PrivateSpeedLayer``), runs the streaming job with its lake sink, as production does. After a
warm-up, requests go in at ``--rate`` per second in windows of ``--window`` seconds; each window's predictions are
awaited before the next window starts. Latency is each prediction's Kafka timestamp minus its request's.

- ``quiet``: ``--quiet-seconds`` of windows with nothing else running;
- ``training, nice N``, for each N of ``--nice``: batch_training's steps run beside the stream, each in a process
  of its own through ``batch.pipeline.fail_fast`` as the DAG's tasks do (``bench.batch_scale.run_size``:
  ``validate_day`` for every day, as many at once as Airflow runs, then preprocess, tune, train_and_register and
  evaluate_and_promote), on ``--days`` generated days of ``--trips`` trips in all, with
  ``LAMBDAML_BATCH__CPU_NICE=N``. Windows go on until the training ends. N = 0 is the batch layer at the speed
  layer's priority (as before ``batch.cpu_nice``); the default is the platform's. ``tune`` runs its trials in the
  stack's Ray head, which runs at the stack's ``batch.cpu_nice``; at any other N it starts a Ray of its own
  (``LAMBDAML_RAY__ADDRESS=local``), so that its trials run at N too.

Reported: p50 and p99 of each phase, and each training's wall time (a lower priority may slow it). Target: p99 at
most 2 s while a training runs at the platform's priority.

Run with the stack up (``make stack-up``): ``python -m bench.stream_training``. The trained model is registered as
``bench_stream_training`` and removed afterwards, with its derived data; the generated raw days are kept for the
next run, under the lake prefix ``bench.batch_scale`` uses for the same size.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import numpy as np
import typer

from bench import batch_scale, common
from bench.endpoint import PrivateSpeedLayer, serve_model, uncommitted
from bench.stream import WARMUP_REQUESTS, PredictionWatcher, RequestProducer, RequestSource
from core.settings import RaySettings, Settings, get_settings
from deploy.local.speed import LakeSinkJob, StreamJob
from deploy.local.stack import Stack

NAME = "stream_training"
MODEL_NAME = "bench_stream_training"
TARGET_P99_MS = 2000.0
START = dt.date(2024, 10, 1)  # generated days no test, demo or other benchmark uses


def percentiles(latency_ms: list[float]) -> dict[str, float]:
    if not latency_ms:
        return {}
    values = np.asarray(latency_ms, dtype="float64")
    return {name: round(float(np.percentile(values, q)), 1)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


class Windows:
    """Requests at a fixed rate, a window at a time; every latency kept for the phase's percentiles."""

    def __init__(self, settings: Settings, source: RequestSource, rate: float, window_s: float, timeout: float):
        self.settings, self.source, self.rate, self.window_s, self.timeout = settings, source, rate, window_s, timeout
        self.sent = 0

    def one(self, label: str, count: int | None = None, rate: float | None = None) -> tuple[list[float], int]:
        """Send one window (``count`` requests, at ``rate``; None: as fast as possible); its latencies and the
        requests that got no prediction within the timeout."""
        count = count if count is not None else round(self.rate * self.window_s)
        messages = self.source.messages(f"{label}-{self.sent:07d}", count)
        self.sent += count
        watcher = PredictionWatcher(self.settings, self.settings.kafka.trip_predictions_topic)
        producer = RequestProducer(self.settings)
        producer.send(messages, rate)
        got = watcher.wait({key for key, _ in messages}, self.timeout, alive=lambda: True)
        return [float(got[k] - producer.sent_ms[k]) for k in got], count - len(got)

    def phase(self, label: str, until: threading.Event | None = None, seconds: float = 0.0) -> dict[str, Any]:
        """Windows until ``until`` is set (or for ``seconds``): the phase's percentiles and counts."""
        latency: list[float] = []
        missing = windows = 0
        t0 = time.monotonic()
        while (not until.is_set()) if until is not None else (time.monotonic() - t0 < seconds):
            got, lost = self.one(label, rate=self.rate)
            latency += got
            missing += lost
            windows += 1
            typer.echo(f"    {label}: window {windows}, p50 {np.median(got) if got else float('nan'):,.0f} ms, "
                       f"max {max(got, default=float('nan')):,.0f} ms after {time.monotonic() - t0:.0f} s")
        return {"windows": windows, "requests": len(latency) + missing, "predicted": len(latency),
                "missing": missing, "seconds": round(time.monotonic() - t0, 1), "latency_ms": percentiles(latency)}


def training(settings: Settings, nice: int, trips: int, days: int, trials: int, epochs: int, seed: int,
             logs: Path, result: dict[str, Any], done: threading.Event) -> threading.Thread:
    """batch_training's steps in step processes at ``nice``, in a thread; ``done`` is set when they end."""
    env = dict(os.environ, LAMBDAML_BATCH__CPU_NICE=str(nice), LAMBDAML_RAY__NUM_SAMPLES=str(trials),
               LAMBDAML_RAY__MAX_EPOCHS=str(epochs),
               LAMBDAML_RAY__GRACE_PERIOD=str(min(epochs, RaySettings().grace_period)))
    if nice != settings.batch.cpu_nice:  # the stack's Ray head runs its trials at the stack's batch.cpu_nice
        env["LAMBDAML_RAY__ADDRESS"] = "local"
    runner = batch_scale.StepRunner("process", MODEL_NAME, logs / f"nice{nice}", env, echo=typer.echo)
    runner.workdir.mkdir(parents=True, exist_ok=True)

    def body() -> None:
        try:
            batch_scale.remove_model(settings, MODEL_NAME)  # no champion from an earlier phase
            batch_scale.run_size(result, trips, days, START, seed, batch_scale.AIRFLOW_MAX_ACTIVE_TASKS_PER_DAG,
                                 runner, SimpleNamespace(phase=""), settings, typer.echo)
        except BaseException as exc:  # noqa: BLE001 - recorded; the stream phase ends with it
            result.setdefault("error", f"{type(exc).__name__}: {str(exc)[-2000:]}")
        finally:
            done.set()

    thread = threading.Thread(target=body, name=f"training-nice{nice}", daemon=True)
    thread.start()
    return thread


def clean_up(settings: Settings, result: dict[str, Any]) -> None:
    try:
        batch_scale.remove_model(settings, MODEL_NAME)
        if "lake_root" in result:
            batch_scale.remove_derived(settings, result["lake_root"], result["run_id"])
    except Exception as exc:  # noqa: BLE001 - a failed clean-up must not hide the measurement
        typer.echo(f"  clean-up failed: {exc}", err=True)


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rate: Annotated[float, typer.Option(help="Requests per second, in every phase.")] = 50.0,
    window: Annotated[float, typer.Option(help="Seconds of requests per window.")] = 10.0,
    quiet_seconds: Annotated[float, typer.Option(help="Seconds of windows with no training beside the stream.")]
    = 60.0,
    nice: Annotated[str, typer.Option(help="Comma-separated batch.cpu_nice of each training phase (default: 0, "
                                           "then the platform's default).")] = "",
    trips: Annotated[int, typer.Option(help="Trips the training reads, over --days generated days.")] = 90_000,
    days: Annotated[int, typer.Option(min=1, max=30, help="Generated days the training reads.")] = 3,
    trials: Annotated[int, typer.Option(help="Ray Tune trials of each training.")] = RaySettings().num_samples,
    epochs: Annotated[int, typer.Option(help="Epochs of each trial.")] = RaySettings().max_epochs,
    timeout: Annotated[float, typer.Option(help="Longest wait for one window's predictions, seconds.")] = 120.0,
    port: Annotated[int, typer.Option(help="Private port of the prediction service.")] = 18212,
    seed: Annotated[int, typer.Option(help="Seed of the generated trips and requests.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """The stream's p50/p99 at a fixed rate alone, then beside batch_training at each priority."""
    started = time.monotonic()
    base = get_settings()
    levels = [int(x) for x in nice.split(",") if x.strip()] if nice else [0, base.batch.cpu_nice]
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    source = RequestSource(max(WARMUP_REQUESTS, round(rate * window)), seed)
    logs = base.runtime_dir / "bench" / NAME / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    phases: dict[str, Any] = {}
    trainings: dict[str, Any] = {}
    with PrivateSpeedLayer(base, port, NAME) as layer:
        s = layer.settings
        layer.publish_model()
        serve_model(s)
        job = Stack(s, catalog=(StreamJob, LakeSinkJob), echo=typer.echo)
        job.up()
        try:
            windows = Windows(s, source, rate, window, timeout)
            typer.echo(f"  warm-up: {WARMUP_REQUESTS} requests")
            windows.one("warm", WARMUP_REQUESTS)
            typer.echo(f"== quiet: {quiet_seconds:g} s at {rate:g}/s")
            phases["quiet"] = windows.phase("quiet", seconds=quiet_seconds)
            for level in levels:
                label = f"training_nice{level}"
                typer.echo(f"== {label}: batch_training ({trips:,} trips over {days} days, {trials} trials x "
                           f"{epochs} epochs) at nice {level}, requests at {rate:g}/s beside it")
                result: dict[str, Any] = {"nice": level}
                done = threading.Event()
                thread = training(base, level, trips, days, trials, epochs, seed, logs, result, done)
                try:
                    phases[label] = windows.phase(label, until=done)
                finally:
                    thread.join()
                    clean_up(base, result)
                trainings[label] = {k: result.get(k) for k in ("nice", "status", "error", "end_to_end_s", "steps",
                                                               "rows_in", "evaluate")}
                if result.get("status") != "ok":
                    raise RuntimeError(f"{label}: the training failed: {result.get('error')}")
        finally:
            job.down()

    def p99(label: str) -> float | None:
        return phases.get(label, {}).get("latency_ms", {}).get("p99")

    default = f"training_nice{base.batch.cpu_nice}"
    summary = [common.comparison(f"stream p99 at {rate:g}/s, training at nice {lv}", p99(f"training_nice{lv}"),
                                 f"stream p99 at {rate:g}/s, quiet", p99("quiet"), "ms", higher_is_better=False,
                                 **({"target": f"p99 <= {TARGET_P99_MS:g} ms",
                                     "met": (p99(default) or float("inf")) <= TARGET_P99_MS}
                                    if f"training_nice{lv}" == default else {}))
               for lv in levels]
    common.write_result(
        NAME,
        parameters={"rate": rate, "window_s": window, "quiet_seconds": quiet_seconds, "nice": levels,
                    "platform_cpu_nice": base.batch.cpu_nice, "trips": trips, "days": days, "first_day": str(START),
                    "trials": trials, "epochs": epochs, "validate_concurrency":
                    batch_scale.AIRFLOW_MAX_ACTIVE_TASKS_PER_DAG, "stream_trigger": base.speed.stream_trigger,
                    "lake_sink": base.speed.lake_sink, "spark_master": base.spark.master,
                    "service": {"workers": base.speed.workers, "threads": base.speed.threads},
                    "load_average_at_start": load_at_start, "uncommitted_changes": uncommitted("speed", "core",
                                                                                               "batch", "dags"),
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={"phases": phases, "trainings": trainings},
        ratios={f"p99 {label}/quiet": p99(label) / p99("quiet") for label in phases
                if label != "quiet" and p99(label) and p99("quiet")},
        echo=typer.echo,
        summary=summary,
        out=out,
    )


if __name__ == "__main__":
    app()
