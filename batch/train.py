"""Train a workload's wide & deep model: plain functions that know nothing of Ray Tune.

Data is read once from the features dataset into tensors (on the GPU when
there is one, from pinned host memory), and mini-batches are index slices,
so the input pipeline never starves the model. Training is seeded and stops
early when the validation metric of the workload's task (``core.task``: MAE
in seconds for taxi, log loss for bike) stops improving.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from core.model import ModelConfig, WideAndDeep, to_tensors
from core.workload import Workload
from core.workload import default as default_workload


def columns(workload: Workload) -> tuple[str, ...]:
    """What a split holds in memory: the features, the label and the columns the baseline reads."""
    return tuple(dict.fromkeys((*workload.features.FEATURE_NAMES, workload.label, *workload.baseline.columns)))


@dataclass
class TrainConfig:
    lr: float = 3e-3
    batch_size: int = 512
    max_epochs: int = 25
    patience: int = 3
    weight_decay: float = 1e-5
    seed: int = 7
    model: ModelConfig = field(default_factory=ModelConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        model = ModelConfig.from_dict(d.pop("model", {}))
        return cls(model=model, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Split:
    """One split in memory: feature columns, the label and the columns the baseline reads, of one workload."""

    columns: dict[str, np.ndarray]
    workload: Workload = field(default_factory=default_workload)

    @property
    def n(self) -> int:
        return len(self.columns[self.workload.label])

    @property
    def y(self) -> np.ndarray:
        return self.columns[self.workload.label].astype("float64")


def load_split(settings, dataset_uri: str, split: str, workload: Workload | None = None) -> Split:
    import pyarrow.dataset as ds

    from core import lake

    wl = workload or default_workload()
    names = columns(wl)
    fs, path = lake.filesystem(settings, f"{dataset_uri}/split={split}")
    table = ds.dataset(path, filesystem=fs, format="parquet").to_table(columns=list(names))
    return Split({c: table.column(c).to_numpy(zero_copy_only=False) for c in names}, wl)


def select_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DeviceData:
    """A split as tensors on the training device; ``y`` is what the network fits (``Task.target`` of the label)."""

    def __init__(self, split: Split, device: torch.device):
        wl = split.workload
        cat, num = to_tensors(split.columns, architecture=wl.model)
        y = torch.as_tensor(wl.task.target(split.y), dtype=torch.float32)
        if device.type == "cuda":
            cat, num, y = (t.pin_memory().to(device, non_blocking=True) for t in (cat, num, y))
        self.cat, self.num, self.y = cat, num, y
        self.n = len(y)


def train_one_epoch(model, optimizer, data: DeviceData, batch_size: int, generator: torch.Generator,
                    device: torch.device, task=None) -> float:
    model.train()
    order = torch.randperm(data.n, generator=generator).to(data.y.device)
    total = torch.zeros((), device=data.y.device)  # summed on the device: no host sync per step
    use_amp = device.type == "cuda"
    for start in range(0, data.n, batch_size):
        idx = order[start:start + batch_size]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = model(data.cat[idx], data.num[idx])
        loss = (task or default_workload().task).loss(pred.float(), data.y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
    return float(total) / max(data.n, 1)


@torch.inference_mode()
def predict(model, cat: torch.Tensor, num: torch.Tensor, task=None, batch_size: int = 8192) -> np.ndarray:
    """The task's prediction per row (``Task.output`` of the network's: seconds for taxi, a probability for
    bike)."""
    task = task or default_workload().task
    model.eval()
    out = [model(cat[i:i + batch_size], num[i:i + batch_size]).float() for i in range(0, len(cat), batch_size)]
    return task.output(torch.cat(out)).cpu().numpy().astype("float64") if out else np.zeros(0)


def predict_split(model, split: Split) -> np.ndarray:
    """``predict`` over a split in memory."""
    cat, num = to_tensors(split.columns, architecture=split.workload.model)
    return predict(model, cat, num, split.workload.task)


def evaluate(model, data: DeviceData, split: Split) -> float:
    """The validation metric: the task's gate metric (MAE in seconds, log loss) on ``split``."""
    task = split.workload.task
    return task.metrics(split.y, predict(model, data.cat, data.num, task))[task.gate]


def fit(config: TrainConfig, train: Split, val: Split, device: torch.device | None = None,
        report: Callable[[dict], None] | None = None) -> tuple[WideAndDeep, list[dict]]:
    """Train with early stopping on the task's validation metric (``Task.val_metric``: ``val_mae_s``,
    ``val_log_loss``); return the best model and the history."""
    device = device or select_device()
    wl = train.workload
    task, metric = wl.task, wl.task.val_metric
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_d, val_d = DeviceData(train, device), DeviceData(val, device)
    model = WideAndDeep(config.model, label_mean=task.initial_output(train.y), architecture=wl.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, since_best, history = math.inf, None, 0, []
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        loss = train_one_epoch(model, optimizer, train_d, config.batch_size, generator, device, task)
        val_error = evaluate(model, val_d, val)
        row = {"epoch": epoch, "train_loss": loss, metric: val_error,
               "samples_per_s": train_d.n / max(time.perf_counter() - t0, 1e-9)}
        history.append(row)
        if report:
            report(row)
        if val_error < best - 1e-6:
            best, best_state, since_best = val_error, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.cpu(), history
