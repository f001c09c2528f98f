"""Wall time of a hyperparameter search: Ray Tune against a plain process pool running the same trials.

Every line trains the same ``--trials`` configurations, drawn once (seeded) from the platform's
search space (``batch.tune.search_space``), on the same generated train/validation split, for the
same epochs, ``--concurrency`` trials at a time, one CPU and one torch thread per trial:

- ``tune``: the search as ``batch.tune.run`` runs it with the local stack up: it joins the stack's
  standing Ray head (``ray-head``, ``batch.tune.join_ray``; its CPUs are recorded and must be at
  least ``--concurrency``), then a ``tune.Tuner`` over the platform's trainable
  (``batch.tune._trainable``, which runs ``batch.train.fit`` and reports each epoch) with the
  resources ``batch.tune.run`` gives a trial (1 CPU; Ray then runs torch with one thread) and its
  ``tune_config`` (actors reused between trials) and ``run_config``, a ``grid_search`` over the
  configurations (one trial each) and no early-stopping scheduler, so every trial runs every
  epoch; timed from ``ray.init`` to the end of ``ray.shutdown``. The head's processes, and so its
  trials, run at the batch layer's niceness (``batch.cpu_nice``); on a quiet machine that costs
  them nothing;
- ``tune_own_ray``: the same search in a Ray started for it alone and stopped after it, as
  ``batch.tune.run`` does where no head answers (``batch.tune.start_local_ray`` with
  ``address="local"``, ``num_cpus=concurrency``, then ``batch.tune.stop_local_ray``), timed from
  its start to the end of its stop. Ray gives its raylet 30 s to register, which a loaded machine
  can miss: a start that fails is stopped and tried again (three times at most), and its seconds
  are left out of the time and recorded (``failed_ray_starts_s``);
- ``pool``: ``concurrent.futures.ProcessPoolExecutor(concurrency)`` (spawned workers, one torch
  thread each, the splits handed over once per worker) mapping ``batch.train.fit`` over the same
  configurations; timed from creating the pool to shutting it down;
- ``ray_floor``: the ``tune`` line with a trainable that trains nothing and reports the last epoch
  at once: Ray's own cost of a search on the standing head (joining, a trial process each
  concurrent slot, leaving), which no trainable can save. ``pool + ray_floor`` over ``pool`` is the
  least ratio Ray Tune can reach at this size; it shrinks as trials grow.

All lines' processes load the compiled bytecode ``make install`` leaves in site-packages
(recorded: ``python_bytecode``). Each trial's last epoch and validation MAE are reported for every
line, so the table can show that they did the same work (the same seed gives the same MAE up to
float noise). Rounds alternate between the lines; medians are reported.

Run with the stack up (``make stack-up``; ``ray-head`` is enough): ``python -m bench.tune_pool``.
Writes bench/results/tune_pool.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import psutil
import typer

from bench import common

NAME = "tune_pool"
VAL_SHARE = 0.2
TARGET = 1.5  # Ray Tune at most this many times the pool's time for the same trials

_splits: tuple[Any, Any] | None = None  # (train, val) in a pool worker, set by _init_worker


def draw_configs(trials: int, epochs: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` configurations drawn from ``batch.tune.search_space`` with a seeded generator."""
    from batch.tune import search_space
    from core.workload import default

    rng = np.random.default_rng(seed)

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if hasattr(value, "sample"):  # a Tune domain: loguniform, choice, uniform
            value = value.sample(random_state=rng)
        return value.item() if isinstance(value, np.generic) else value

    space = search_space(epochs, seed, default().model)
    return [json.loads(json.dumps(resolve(space))) for _ in range(trials)]


def config_key(config: dict[str, Any]) -> str:
    """A trial's identity: its configuration as canonical JSON."""
    return json.dumps(config, sort_keys=True)


def splits(rows: int, seed: int):
    """Generated trips with every feature (numpy forms), cut into train and validation splits."""
    from batch.train import Split
    from bench.train_throughput import feature_columns

    columns = feature_columns(rows, seed)
    cut = int(rows * (1 - VAL_SHARE))
    return (Split({k: v[:cut] for k, v in columns.items()}), Split({k: v[cut:] for k, v in columns.items()}))


def python_bytecode() -> dict[str, Any]:
    """Whether new processes load compiled bytecode: without it (``PYTHONDONTWRITEBYTECODE`` and no ``.pyc`` in
    site-packages) every one compiles its imports again, which weighs on Ray's many processes more than on the
    pool's two. ``make install`` compiles site-packages, so both lines load it."""
    import torch

    compiled = any((Path(torch.__file__).parent / "__pycache__").glob("*.pyc"))
    return {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"), "site_packages_compiled": compiled}


def _init_worker(train: Any, val: Any, torch_threads: int) -> None:
    import torch

    global _splits
    torch.set_num_threads(torch_threads)
    _splits = (train, val)


def _pool_trial(config: dict[str, Any]) -> dict[str, Any]:
    from batch import train

    assert _splits is not None, "the worker was not initialised"
    _, history = train.fit(train.TrainConfig.from_dict(config), *_splits)
    return {"epoch": history[-1]["epoch"], "val_mae_s": history[-1]["val_mae_s"]}


def _stop_new_children(before: set[int]) -> None:
    """Terminate the processes this one started since ``before`` was taken (by pid), kill any that stay."""
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for proc in new:
        proc.terminate()
    _, alive = psutil.wait_procs(new, timeout=10)
    for proc in alive:
        proc.kill()


def _tune_trial(config: dict[str, Any], train_split: Any, val_split: Any) -> None:
    """The platform's trainable on the configuration of this grid point."""
    from batch import tune as platform_tune

    platform_tune._trainable(config["trial"], train_split, val_split)


def _empty_trial(config: dict[str, Any], train_split: Any, val_split: Any) -> None:
    """No training: reports the last epoch at once. Ray's own cost of a search, what no trainable can save."""
    from ray import tune

    tune.report({"epoch": config["trial"]["max_epochs"], "val_mae_s": 0.0})


def pool_run(configs: list[dict[str, Any]], train: Any, val: Any, concurrency: int) -> dict[str, dict[str, Any]]:
    """Every configuration through ``batch.train.fit`` in a process pool; the last epoch of each."""
    with ProcessPoolExecutor(max_workers=concurrency, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(train, val, 1)) as pool:
        return {config_key(c): r for c, r in zip(configs, pool.map(_pool_trial, configs))}


def _start_own_ray(concurrency: int, failed_starts_s: list[float]) -> None:
    """A Ray for one search, as ``batch.tune.run`` starts one where no head answers; starts that fail are stopped
    and tried again, their seconds appended to ``failed_starts_s``."""
    import ray

    from batch import tune as platform_tune

    for attempt in (1, 2, 3):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        t0 = time.perf_counter()
        try:
            platform_tune.start_local_ray(num_cpus=concurrency, num_gpus=0, address="local")
            return
        except Exception as exc:  # noqa: BLE001 - Ray gives its raylet 30 s to register, too short under load
            ray.shutdown()
            _stop_new_children(before)  # a failed start leaves its GCS and dashboard running
            failed_starts_s.append(time.perf_counter() - t0)
            if attempt == 3:
                raise
            typer.echo(f"  Ray did not start ({str(exc).splitlines()[0]}); trying again")


def tune_run(configs: list[dict[str, Any]], train: Any, val: Any, concurrency: int, head: str | None,
             failed_starts_s: list[float], trial: Any = _tune_trial) -> dict[str, dict[str, Any]]:
    """The same configurations as a Ray Tune search over the platform's trainable (``trial``: another one), on the
    Ray head at ``head`` (None: a Ray started for the search); the last epoch of each.

    The seconds spent in Ray starts that failed are appended to ``failed_starts_s``.
    """
    import ray
    from ray import tune

    from batch import tune as platform_tune

    if head:
        platform_tune.join_ray(head)
    else:
        _start_own_ray(concurrency, failed_starts_s)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(trial, train_split=train, val_split=val), {"cpu": 1, "gpu": 0})
        with tempfile.TemporaryDirectory(prefix="lambdaml-bench-tune-") as storage:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(configs)},
                tune_config=platform_tune.tune_config("val_mae_s", max_concurrent_trials=concurrency),
                run_config=platform_tune.run_config(Path(storage)),
            )
            results = tuner.fit()
            out = {}
            for result in results:
                if result.error:
                    raise RuntimeError(f"a Tune trial failed: {result.error}")
                out[config_key(json.loads(json.dumps(result.config["trial"])))] = {
                    "epoch": result.metrics["epoch"], "val_mae_s": result.metrics["val_mae_s"]}
            return out
    finally:
        if head:
            ray.shutdown()
        else:
            platform_tune.stop_local_ray()


def head_cpus(head: str) -> int:
    """CPUs the standing Ray head offers (joined once, outside the timed lines)."""
    import ray

    from batch import tune as platform_tune

    platform_tune.join_ray(head)
    try:
        return int(ray.cluster_resources().get("CPU", 0))
    finally:
        ray.shutdown()


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    trials: Annotated[int, typer.Option(help="Configurations trained by each line.")] = 4,
    concurrency: Annotated[int, typer.Option(help="Trials at a time (Ray CPUs, pool workers).")] = 2,
    rows: Annotated[int, typer.Option(help="Generated trips; the last 20% are the validation split.")] = 20_000,
    epochs: Annotated[int, typer.Option(help="Epochs per trial (every trial runs them all).")] = 2,
    repeats: Annotated[int, typer.Option(help="Timed rounds (each runs every line); medians are reported.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the data, the drawn configurations and the training.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Compare the wall time of N trials under Ray Tune with the same trials in a ProcessPoolExecutor."""
    from batch import tune as platform_tune
    from core.ray_auth import token_env
    from core.settings import get_settings

    started = time.monotonic()
    settings = get_settings()
    head = settings.ray_head_address
    os.environ.update(token_env(settings))  # both Rays (the head's, a search's own) use the platform's token
    if not platform_tune.head_answers(settings):
        raise typer.BadParameter(f"no Ray head answers at {head}: run `make stack-up` first (the stack's `ray-head`; "
                                 "LAMBDAML_RAY__LOCAL_HEAD must not be false)")
    cpus = head_cpus(head)
    if cpus < concurrency:
        raise typer.BadParameter(f"the Ray head at {head} offers {cpus} CPUs, fewer than --concurrency "
                                 f"{concurrency}: start the stack with LAMBDAML_RAY__NUM_CPUS={concurrency}")
    configs = draw_configs(trials, epochs, seed)
    typer.echo(f"data: {rows:,} generated trips, features computed (numpy forms)")
    train, val = splits(rows, seed)
    failed_starts_s: list[float] = []
    runs = {"tune": lambda: tune_run(configs, train, val, concurrency, head, failed_starts_s),
            "pool": lambda: pool_run(configs, train, val, concurrency),
            "tune_own_ray": lambda: tune_run(configs, train, val, concurrency, None, failed_starts_s),
            "ray_floor": lambda: tune_run(configs, train, val, concurrency, head, failed_starts_s, _empty_trial)}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    trial_results: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in runs}
    typer.echo(f"{repeats} rounds of {trials} trials x {epochs} epochs, {concurrency} at a time, each runs "
               f"{', '.join(runs)}")
    for i in range(repeats):
        for name, run in runs.items():
            t0, lost = time.perf_counter(), sum(failed_starts_s)
            result = run()
            elapsed = time.perf_counter() - t0 - (sum(failed_starts_s) - lost)  # failed Ray starts not counted
            if sorted(result) != sorted(config_key(c) for c in configs):
                raise RuntimeError(f"{name}: ran {len(result)} trials, not the {trials} configurations given")
            if any(r["epoch"] != epochs for r in result.values()):
                raise RuntimeError(f"{name}: a trial stopped before epoch {epochs}: {list(result.values())}")
            seconds[name].append(elapsed)
            trial_results[name].append(result)
            typer.echo(f"  round {i + 1}/{repeats} {name}: {elapsed:.2f} s, val MAE "
                       + ", ".join(f"{result[config_key(c)]['val_mae_s']:.1f}" for c in configs))

    last = {name: results[-1] for name, results in trial_results.items()}
    table = [{"config": c, **{f"{name}_val_mae_s": round(last[name][config_key(c)]["val_mae_s"], 3)
                               for name in runs}} for c in configs]
    max_diff = max(abs(r[f"{line}_val_mae_s"] - r["pool_val_mae_s"])
                   for r in table for line in ("tune", "tune_own_ray"))
    for r in table:
        del r["ray_floor_val_mae_s"]  # trained nothing
    median = {name: common.median(s) for name, s in seconds.items()}
    common.write_result(
        NAME,
        parameters={"trials": trials, "concurrency": concurrency, "rows": rows, "val_share": VAL_SHARE,
                    "epochs": epochs, "repeats": repeats, "seed": seed, "cpus_per_trial": 1, "torch_threads": 1,
                    "tune": "batch.tune.join_ray(the stack's ray-head) + Tuner(batch.tune._trainable, "
                            "batch.tune.tune_config (reuse_actors), grid_search over the configurations, no "
                            "scheduler) + ray.shutdown",
                    "tune_own_ray": "the same Tuner between batch.tune.start_local_ray(address=local, "
                                    "num_cpus=concurrency) and batch.tune.stop_local_ray",
                    "ray_head": {"address": head, "cpus": cpus, "nice": settings.batch.cpu_nice},
                    "pool": "ProcessPoolExecutor(spawn) mapping batch.train.fit",
                    "python_bytecode": python_bytecode(),
                    "failed_ray_starts_s": [round(x, 1) for x in failed_starts_s],
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={**{name: {"median_s": round(median[name], 3), "runs_s": [round(x, 3) for x in s],
                                "trials_per_min": round(trials / median[name] * 60, 2)}
                         for name, s in seconds.items()},
                      "trials": table, "max_val_mae_difference_s": round(max_diff, 3)},
        ratios={"tune_s/pool_s": median["tune"] / median["pool"],
                "tune_own_ray_s/pool_s": median["tune_own_ray"] / median["pool"],
                "(pool_s + ray_floor_s)/pool_s": (median["pool"] + median["ray_floor"]) / median["pool"]},
        echo=typer.echo,
        summary=[common.comparison("tune", median["tune"], "pool", median["pool"], "s", higher_is_better=False,
                                   target=f"ratio <= {TARGET:g}", met=median["tune"] <= TARGET * median["pool"]),
                 common.comparison("tune in a Ray of its own (started and stopped)", median["tune_own_ray"],
                                   "pool", median["pool"], "s", higher_is_better=False),
                 common.comparison("pool + ray_floor (joining the head, empty trials, leaving)",
                                   median["pool"] + median["ray_floor"], "pool", median["pool"], "s",
                                   higher_is_better=False)],
        out=out,
    )


if __name__ == "__main__":
    app()
