"""Training samples per second: the platform's input pipeline against tensors already in memory.

``pipeline`` is what ``batch.train.fit`` does with a split: ``load_split`` reads the features
Parquet from disk into numpy (pyarrow), ``DeviceData`` builds the tensors (pinned and copied to
the GPU when there is one), then ``train_one_epoch`` runs for every epoch. ``in_memory`` runs the
same loop (same model, seed, batch size and epochs) over tensors built before the clock starts.
Validation after each epoch, which ``fit`` also does, is left out of both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import typer

from batch.train import DeviceData, Split, TrainConfig, load_split, select_device, train_one_epoch
from bench import common, data
from core.model import WideAndDeep
from core.settings import get_settings
from workloads.taxi import features

NAME = "train_throughput"
SPLIT = "train"


def feature_columns(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Request columns, label and every feature (numpy forms) for ``rows`` generated trips."""
    batch = data.requests(pa.concat_tables(data.raw_days(rows, seed)))
    return {**batch, **features.compute_numpy(batch)}


def write_features(columns: dict[str, np.ndarray], rows: int, seed: int) -> Path:
    """The features dataset as the preprocess step lays it out (``split=train``), cached by (rows, seed)."""
    dataset = common.CACHE_DIR / f"features-{rows}-seed{seed}"
    target = dataset / f"split={SPLIT}" / "part-0.parquet"
    if not target.exists():
        typer.echo(f"features: writing {target}")
        kinds = {f.name: f.kind for f in features.FEATURES}
        table = pa.table({name: pa.array(values.astype("int32") if kinds.get(name) == "categorical" else values)
                          for name, values in columns.items()})
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        pq.write_table(table, partial)
        partial.rename(target)
    else:
        typer.echo(f"features: cached {target}")
    return dataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_seconds(train: DeviceData, config: TrainConfig, epochs: int, device: torch.device) -> float:
    """Wall seconds of ``epochs`` calls of ``train_one_epoch`` on a fresh, seeded model (as ``fit`` builds it)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = WideAndDeep(config.model, label_mean=float(train.y.mean())).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        train_one_epoch(model, optimizer, train, config.batch_size, generator, device)
    _sync(device)
    return time.perf_counter() - t0


def pipeline_run(dataset: Path, config: TrainConfig, epochs: int, device: torch.device) -> dict[str, float]:
    """Seconds for each stage of the platform's path from the Parquet split to trained epochs."""
    t0 = time.perf_counter()
    split = load_split(get_settings(), str(dataset), SPLIT)
    t1 = time.perf_counter()
    train = DeviceData(split, device)
    _sync(device)
    t2 = time.perf_counter()
    train_s = train_seconds(train, config, epochs, device)
    return {"load_s": t1 - t0, "to_tensors_s": t2 - t1, "train_s": train_s, "total_s": t2 - t0 + train_s}


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: common.median([r[key] for r in runs]) for key in runs[0]}


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="Training rows (generated, features cached under ~/.cache/lambdaml/bench).")]
    = 500_000,
    epochs: Annotated[int, typer.Option(help="Epochs per timed run.")] = 2,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = TrainConfig.batch_size,
    repeats: Annotated[int, typer.Option(help="Timed runs of each path; the median is reported.")] = 3,
    warmup_rows: Annotated[int, typer.Option(help="Rows of one untimed warm-up epoch before the timed runs.")]
    = 50_000,
    seed: Annotated[int, typer.Option(help="Generator and training seed.")] = 7,
    device: Annotated[str | None, typer.Option(help="Torch device; default: batch.train.select_device().")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Torch intra-op threads; default: torch's own choice, as in batch.train. "
             "When set, results go to train_throughput-threads<N>.json.")] = None,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Compare training samples/s through the Parquet input pipeline with the same loop over in-memory tensors."""
    if threads is not None:
        torch.set_num_threads(threads)
    target = select_device(device)
    config = TrainConfig(batch_size=batch_size, seed=seed)
    typer.echo(f"device: {target}, torch threads: {torch.get_num_threads()}")
    typer.echo(f"features: computing {rows:,} rows (numpy forms)")
    columns = feature_columns(rows, seed)
    dataset = write_features(columns, rows, seed)
    in_memory = DeviceData(Split(columns), target)
    warm = DeviceData(Split({name: values[:warmup_rows] for name, values in columns.items()}), target)
    typer.echo(f"warm-up: 1 epoch on {warm.n:,} rows")
    train_seconds(warm, config, 1, target)

    pipeline_runs: list[dict[str, float]] = []
    memory_runs: list[float] = []
    for i in range(repeats):
        pipeline_runs.append(pipeline_run(dataset, config, epochs, target))
        memory_runs.append(train_seconds(in_memory, config, epochs, target))
        typer.echo(f"  run {i + 1}/{repeats}: pipeline {pipeline_runs[-1]['total_s']:.2f} s "
                   f"(load {pipeline_runs[-1]['load_s']:.2f} s, tensors {pipeline_runs[-1]['to_tensors_s']:.2f} s), "
                   f"in-memory {memory_runs[-1]:.2f} s")

    samples = in_memory.n * epochs
    pipeline = _median_of(pipeline_runs)
    memory_s = common.median(memory_runs)
    pipeline_rate = samples / pipeline["total_s"]
    memory_rate = samples / memory_s
    common.write_result(
        NAME if threads is None else f"{NAME}-threads{threads}",
        parameters={"rows": in_memory.n, "epochs": epochs, "batch_size": batch_size, "repeats": repeats,
                    "warmup_rows": warm.n, "seed": seed, "device": str(target),
                    "torch_threads": torch.get_num_threads(), "model": config.model.to_dict(),
                    "features_bytes": sum(p.stat().st_size for p in dataset.rglob("*.parquet"))},
        measurements={
            "pipeline": {**{k: round(v, 3) for k, v in pipeline.items()}, "samples_per_s": round(pipeline_rate),
                         "train_only_samples_per_s": round(samples / pipeline["train_s"]),
                         "runs_total_s": [round(r["total_s"], 3) for r in pipeline_runs]},
            "in_memory": {"train_s": round(memory_s, 3), "samples_per_s": round(memory_rate),
                          "runs_train_s": [round(s, 3) for s in memory_runs]},
        },
        ratios={"pipeline/in_memory": pipeline_rate / memory_rate,
                "pipeline_train_only/in_memory": samples / pipeline["train_s"] / memory_rate,
                "pipeline_io_share": common.median([(r["load_s"] + r["to_tensors_s"]) / r["total_s"]
                                                    for r in pipeline_runs])},
        echo=typer.echo,
        summary=[common.comparison("pipeline", pipeline_rate, "in_memory", memory_rate, "samples/s",
                                   higher_is_better=True, target="ratio >= 0.8",
                                   met=pipeline_rate / memory_rate >= 0.8)],
        out=out,
    )


if __name__ == "__main__":
    app()
