"""Hyperparameter search with Ray Tune (ASHA), then the best configuration trained in full.

The trainable only turns ``config`` into a ``TrainConfig`` and reports each
epoch's validation metric (the workload's task's: ``val_mae_s``, ``val_log_loss``);
all training logic lives in ``batch.train``. The embedding widths searched are the
ones the workload's architecture declares.

What a search costs beyond its training is Ray's: starting a Ray, and a process
per trial that imports Ray Tune and torch before it trains. Most trials of the
CI-sized search train for seconds, so those starts are most of its time. A
search therefore joins a Ray that is already running (the local stack's
``ray-head``, or a cluster's) and starts one of its own only where none answers
(``ray_address``); and trials reuse their actors: one process per concurrent
trial, not per trial. ``bench.tune_pool`` measures this against a plain process
pool through ``join_ray``, ``start_local_ray``, ``tune_config`` and ``run_config``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from batch import train
from core.architecture import Architecture

log = logging.getLogger(__name__)


def search_space(max_epochs: int, seed: int, architecture: Architecture):
    from ray import tune

    return {
        "lr": tune.loguniform(1e-3, 1e-2),
        "batch_size": tune.choice([256, 512, 1024]),
        "weight_decay": tune.loguniform(1e-6, 1e-4),
        "model": {
            "widths": {name: tune.choice(list(choices)) for name, choices in architecture.width_choices.items()},
            "hidden": tune.choice([[64, 32], [128, 64], [256, 128]]),
            "dropout": tune.uniform(0.0, 0.3),
        },
        "max_epochs": max_epochs,
        "patience": 3,
        "seed": seed,
    }


def _trainable(config: dict, train_split: train.Split, val_split: train.Split) -> None:
    from ray import tune

    metric = train_split.workload.task.val_metric
    train.fit(train.TrainConfig.from_dict(config), train_split, val_split,
              report=lambda row: tune.report({metric: row[metric], "epoch": row["epoch"]}))


def ray_address(configured: str | None, head_address: str, head_answers: bool) -> str | None:
    """The Ray a search joins, or None to start one of its own: the configured address (``local``: none); unset,
    the local stack's head (``Settings.ray_head_address``) when it answers."""
    if configured == "local":
        return None
    if configured:
        return configured
    return head_address if head_answers else None


def head_answers(settings) -> bool:
    """Whether the local stack's Ray head accepts connections on its GCS port (and the stack runs one)."""
    from deploy.local.process import port_open

    if not settings.ray.local_head:
        return False
    host, _, port = settings.ray_head_address.rpartition(":")
    return port_open(host, int(port))


def join_ray(address: str) -> None:
    """Join a running Ray (the stack's head, a cluster) as this search's driver; ``ray.shutdown()`` leaves it
    running. Its trials run in its worker processes, at its priority."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)


def start_local_ray(num_cpus: int | None, num_gpus: int, address: str | None = None) -> None:
    """Start a local Ray for a search: no dashboard, no log forwarding. ``address="local"`` always starts a new
    one (``None`` joins one already running)."""
    import ray

    ray.init(address=address, num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             log_to_driver=False, configure_logging=False)


def stop_local_ray() -> None:
    """``ray.shutdown()`` of a Ray this process started, without a second spent on the autoscaler monitor.

    ``ray.shutdown`` stops the GCS before the monitor. The monitor's SIGTERM handler then reports its own end to
    the GCS that is gone, and Ray kills it after a grace of one second: on the 2-core VM that was 1.0 of the
    1.1-1.35 s a shutdown took. A local Ray has nothing to autoscale, so the monitor is stopped first, at once;
    the rest of the shutdown is Ray's own. (Ray is pinned in ``pyproject.toml``; its node object is internal, so
    where it is missing this is plain ``ray.shutdown()``.)"""
    import ray
    from ray._private import worker

    node = getattr(worker, "_global_node", None)  # a driver that joined a cluster has a node that is not its head
    if node is not None and getattr(node, "head", False) and hasattr(node, "_kill_process_type"):
        node._kill_process_type("monitor", allow_graceful=False, check_alive=False, wait=True)
    ray.shutdown()


def tune_config(metric: str, **options):
    """The search's ``TuneConfig``: minimise ``metric``, and reuse each trial's actor for the next trial.

    Without reuse every trial is a new Ray actor, a new process that imports Ray Tune and torch (about
    6 s on the 2-core VM, 3 s with the bytecode cache) before training for a few seconds. The trainable
    keeps no state between trials (``batch.train.fit`` seeds and builds everything per call), so a reused
    process trains the same numbers. A trial whose thread does not end within Tune's timeout on reset
    gets a new actor, as before.
    """
    from ray import tune

    return tune.TuneConfig(metric=metric, mode="min", reuse_actors=True, **options)


def run_config(storage: Path):
    """The search's ``RunConfig``: results under ``storage`` (each trial's ``result.json`` and ``progress.csv``),
    no progress table.

    Tune adds a TensorBoard logger to those two unless told not to, and importing ``tensorboardX`` for it took
    1.3 s of the driver's CPU a search on the 2-core VM (empty trials: 3.0 s to 1.6 s). Nothing reads its event
    files, so Tune's automatic loggers are off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``, the only switch Tune
    has, read when the search starts) and the JSON and CSV loggers are named here."""
    import os

    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    return tune.RunConfig(storage_path=str(storage.resolve()), name="tune", verbose=0,
                          callbacks=[JsonLoggerCallback(), CSVLoggerCallback()])


@dataclass
class TuneResult:
    best_config: train.TrainConfig
    best_val: float  # the best trial's validation metric (``metric``)
    trials: int
    metric: str = "val_mae_s"


def run(settings, train_split: train.Split, val_split: train.Split, storage: Path, seed: int = 7) -> TuneResult:
    """Search; return the best configuration, set to train for the full epoch budget."""
    import os

    from core.ray_auth import token_env

    r = settings.ray
    address = ray_address(r.address, settings.ray_head_address, not r.address and head_answers(settings))
    if address in (None, settings.ray_head_address):  # the platform's own Ray: its token (before Ray is imported)
        os.environ.update(token_env(settings))

    import ray
    import torch
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    wl = train_split.workload
    metric = wl.task.val_metric
    gpus = r.num_gpus if r.num_gpus is not None else torch.cuda.device_count()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            log.info("tune: joining the Ray at %s", address)
            join_ray(address)
        else:
            log.info("tune: starting a Ray for this search (%s CPUs); none answers at %s", r.num_cpus,
                     settings.ray_head_address)
            start_local_ray(r.num_cpus, gpus)
    try:
        per_trial = {"cpu": 1, "gpu": 1 if gpus else 0}
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, train_split=train_split, val_split=val_split), per_trial)
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(r.max_epochs, seed, wl.model),
            tune_config=tune_config(
                metric, num_samples=r.num_samples,
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=r.max_epochs,
                                        grace_period=min(r.grace_period, r.max_epochs), reduction_factor=2),
            ),
            run_config=run_config(storage),
        )
        results = tuner.fit()
        best = results.get_best_result(metric=metric, mode="min", scope="all")
        best_config = train.TrainConfig.from_dict(best.config)
    finally:
        if started_here:
            stop_local_ray()
    final = dataclasses.replace(best_config, max_epochs=r.max_epochs)
    return TuneResult(best_config=final, best_val=float(best.metrics[metric]), trials=len(results), metric=metric)
