"""Training on CUDA against training on the CPU of the same machine: samples/s and the model's test MAE.

Both fits are ``batch.train.fit`` as ``train_and_register`` calls it (same data, config and seed; bf16 autocast on
CUDA), with early stopping off so that both run the same epochs. Train, validation and test rows are generated trips
of three seeds (features in the numpy forms); the test MAE of each model is computed on the CPU, as the service
predicts, beside the zone-pair baseline's. Needs a CUDA device for the comparison; without one it measures the CPU
alone. Not in ``make bench``: run it on a GPU machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import torch
import typer

from batch.evaluate import baseline_metrics, model_metrics
from batch.train import Split, TrainConfig, fit
from bench import common, data
from core.workload import default as default_workload

NAME = "train_devices"


def split_of(rows: int, seed: int) -> Split:
    batch = data.requests(pa.concat_tables(data.raw_days(rows, seed)))
    return Split({**batch, **default_workload().features.compute_numpy(batch)})


def run_fit(device: str, config: TrainConfig, train: Split, val: Split, test: Split) -> dict:
    started = time.perf_counter()
    model, history = fit(config, train, val, device=torch.device(device))
    wall = time.perf_counter() - started
    mae = model_metrics(model, test)["mae_s"]
    rates = [h["samples_per_s"] for h in history[1:]] or [history[0]["samples_per_s"]]
    return {"fit_s": round(wall, 3), "epochs": len(history), "samples_per_s": round(common.median(rates)),
            "test_mae_s": round(mae, 2), "best_val_mae_s": round(min(h["val_mae_s"] for h in history), 2)}


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="Training rows (validation and test: a quarter each).")] = 400_000,
    epochs: Annotated[int, typer.Option(help="Epochs of each fit (no early stop).")] = 5,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated mini-batch sizes, one fit per device each.")]
    = "512,8192",
    seed: Annotated[int, typer.Option(help="Generator and training seed.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Fit the same model on the CPU and on CUDA; report samples/s and test MAE of each."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    typer.echo(f"devices: {', '.join(devices)}; torch threads: {torch.get_num_threads()}")
    train, val, test = split_of(rows, seed), split_of(rows // 4, seed + 1), split_of(rows // 4, seed + 2)
    base_mae = baseline_metrics(train, test)["mae_s"]
    measurements: dict[str, dict] = {"baseline": {"test_mae_s": round(base_mae, 2)}}
    summary, ratios = [], {}
    for size in (int(s) for s in batch_sizes.split(",")):
        config = TrainConfig(batch_size=size, max_epochs=epochs, patience=epochs + 1, seed=seed)
        for device in devices:
            key = f"{device}_bs{size}"
            measurements[key] = run_fit(device, config, train, val, test)
            typer.echo(f"  {key}: {measurements[key]}")
        if "cuda" in devices:
            gpu, cpu = measurements[f"cuda_bs{size}"], measurements[f"cpu_bs{size}"]
            ratios[f"cuda/cpu samples_per_s bs{size}"] = gpu["samples_per_s"] / cpu["samples_per_s"]
            ratios[f"cuda/cpu test_mae bs{size}"] = gpu["test_mae_s"] / cpu["test_mae_s"]
            summary.append(common.comparison(f"cuda bs{size}", gpu["samples_per_s"], f"cpu bs{size}",
                                             cpu["samples_per_s"], "samples/s", higher_is_better=True))
            summary.append(common.comparison(f"cuda bs{size} test MAE", gpu["test_mae_s"], f"cpu bs{size} test MAE",
                                             cpu["test_mae_s"], "s", higher_is_better=False))
    common.write_result(NAME, parameters={"rows": train.n, "val_rows": val.n, "test_rows": test.n, "epochs": epochs,
                                          "batch_sizes": batch_sizes, "seed": seed, "devices": devices,
                                          "torch_threads": torch.get_num_threads()},
                        measurements=measurements, ratios=ratios, echo=typer.echo, summary=summary, out=out)


if __name__ == "__main__":
    app()
