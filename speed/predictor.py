"""The model in memory: load, verify, warm up, predict, and swap atomically.

A ``LoadedModel`` is immutable once built. ``ModelHolder.current`` is one
attribute read, so a forward pass always runs on one complete model; a swap
replaces the reference only after the new model has been verified and warmed
up, and requests already running finish on the model they started with.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.contract import Request
from core.registry import Artifact, ArtifactError
from core.workload import Workload
from core.workload import default as default_workload

log = logging.getLogger("lambdaml.speed")
# Batches of up to this many rows are scored with numpy on the CPU (``core.model.NumpyWideAndDeep`` and the task's
# ``output_numpy``), larger ones with torch. Whole prediction of a batch on the 2-core VM: 24 us against 49 us at
# one row, 64 against 71 at 64 rows, 477 against 214 at 512.
NUMPY_MAX_ROWS = 64
features = default_workload().features


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    sha256: str
    uri: str
    module: Any  # core.model.WideAndDeep, in eval mode
    device: str = "cpu"
    metrics: dict = field(default_factory=dict)
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    runner: Any = None  # what scores: core.model.FusedWideAndDeep of ``module`` (``module`` itself if None)
    cpu_runner: Any = None  # on the CPU: core.model.NumpyWideAndDeep of ``runner``; scores small batches
    workload: Workload | None = None  # whose model this is; None: the default workload's

    @property
    def wl(self) -> Workload:
        return self.workload or default_workload()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "uri": self.uri,
                "workload": self.wl.name, "device": self.device, "metrics": self.metrics,
                "loaded_at": self.loaded_at.isoformat()}


def request_columns(requests: Sequence[Any], request: Request | None = None) -> dict[str, np.ndarray]:
    """Validated requests to the input columns of the workload's features (the in-process form), by the request's
    declaration (``core.contract``): the timestamp as ``datetime64[us]`` wall clock (UTC), numbers as float64 (NaN
    for a missing one), text and categories as object arrays (None for a missing one)."""
    req = request or default_workload().request
    n = len(requests)
    out: dict[str, np.ndarray] = {}
    for f in req.fields:
        if f.kind == "key":
            continue
        values = [getattr(r, f.name) for r in requests]
        if f.kind == "timestamp":
            out[f.name] = np.array([v.replace(tzinfo=None) for v in values], dtype="datetime64[us]")
        elif f.kind in ("integer", "number"):
            out[f.name] = np.fromiter((np.nan if v is None else v for v in values), dtype="float64", count=n)
        else:
            out[f.name] = np.array(values, dtype=object)
    return out


def predict(model: LoadedModel, requests: Sequence[Any]) -> np.ndarray:
    """The model's prediction per request (seconds for taxi, a probability for bike), features by their
    in-process form."""
    if not requests:
        return np.zeros(0)
    wl = model.wl
    return predict_features(model, wl.features.compute_numpy(request_columns(requests, wl.request)))


def predict_features(model: LoadedModel, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The model's predictions from feature columns already computed (e.g. by the Spark form)."""
    import torch

    from core.model import to_arrays, to_tensors

    wl = model.wl
    if model.cpu_runner is not None and len(next(iter(columns.values()))) <= NUMPY_MAX_ROWS:
        return wl.task.output_numpy(model.cpu_runner(*to_arrays(columns, wl.model))).astype("float64")
    cat, num = to_tensors(columns, device=model.device, architecture=wl.model)
    with torch.inference_mode():
        out = (model.runner or model.module)(cat, num).float()
    return wl.task.output(out).cpu().numpy().astype("float64")


def check_feature_columns(body: object, max_rows: int, feature_set: Any = None,
                          ids: str = "trip_ids") -> tuple[list[str], dict[str, np.ndarray]]:
    """``{"<ids>": [...], "features": {name: [...]}}`` to ids and columns of ``feature_set`` (the default
    workload's when None); ``ValueError("<field>: why")`` if not."""
    feature_set = feature_set or features
    if not isinstance(body, dict):
        raise ValueError(f"body: must be a JSON object with {ids} and features")
    id_list, cols = body.get(ids), body.get("features")
    if not isinstance(id_list, list) or not id_list or not all(isinstance(i, str) for i in id_list):
        raise ValueError(f"{ids}: must be a non-empty list of strings")
    if len(id_list) > max_rows:
        raise OverflowError(f"{ids}: {len(id_list)} rows is over the limit of {max_rows}")
    if not isinstance(cols, dict):
        raise ValueError("features: must be an object of feature columns")
    out: dict[str, np.ndarray] = {}
    for f in feature_set.FEATURES:
        values = cols.get(f.name)
        if not isinstance(values, list) or len(values) != len(id_list):
            raise ValueError(f"features.{f.name}: must be a list of {len(id_list)} numbers")
        if not all(type(v) in (int, float) for v in values):  # JSON numbers only: no strings, booleans or nulls
            raise ValueError(f"features.{f.name}: must hold numbers only")
        try:
            arr = np.asarray(values, dtype="float64")
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"features.{f.name}: must hold numbers only") from None
        if arr.ndim != 1 or not np.all(np.isfinite(arr)):
            raise ValueError(f"features.{f.name}: must hold finite numbers")
        if f.kind == "categorical":
            if not np.all((arr >= 0) & (arr < f.cardinality) & (arr == np.floor(arr))):
                raise ValueError(f"features.{f.name}: must be integers in 0..{f.cardinality - 1}")
            arr = arr.astype("int64")
        out[f.name] = arr
    return id_list, out


def build(name: str, version: str, sha256: str, uri: str, data: bytes, device: str = "cpu",
          workload: Workload | None = None) -> LoadedModel:
    """Verify and load an artifact of ``workload``'s model (the default's when None), then warm it up with the
    workload's example request. Raises ``ArtifactError`` on anything wrong."""
    from core.events import request_model_of

    wl = workload or default_workload()
    artifact = Artifact.from_bytes(data, expected_sha256=sha256)
    try:
        module = artifact.build_model(wl).to(device)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - shape or key mismatch: the file is not this model
        raise ArtifactError(f"artifact does not fit the model: {exc}", reason="model") from exc
    from core.model import FusedWideAndDeep

    try:
        runner = FusedWideAndDeep(module.eval())
    except ValueError as exc:  # another MLP shape: score with the module itself
        log.info("serving %s unfused: %s", version, exc)
        runner = None
    cpu_runner = runner.numpy() if runner is not None and device == "cpu" else None
    loaded = LoadedModel(name, version, sha256, uri, module, device, dict(artifact.metrics), runner=runner,
                         cpu_runner=cpu_runner, workload=wl)
    warmup = request_model_of(wl.name).model_validate(wl.example)
    for size in (1, NUMPY_MAX_ROWS, NUMPY_MAX_ROWS + 1):  # first calls allocate, on both paths: before serving
        out = predict(loaded, [warmup] * size)
        if not np.all(np.isfinite(out)):
            raise ArtifactError("artifact predicts non-finite values", reason="model")
    return loaded


class ModelHolder:
    """The one model a worker serves. Readers take ``current``; ``swap`` replaces it whole."""

    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.swapped_at: float | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        with self._lock:
            old, self._current = self._current, new
            self.swapped_at = time.time()
            self.last_error = None
        log.info("serving %s (was %s)", new.version, old.version if old else "nothing")
        return old


def served_workloads(settings) -> list[Workload]:
    """The workloads the service serves: ``speed.workloads``, or every workload folder when that is empty."""
    from core.workload import known, load

    return [load(name) for name in (settings.speed.workloads or known())]


def served_model_name(settings, workload: Workload) -> str:
    """The registered model served for ``workload``: ``speed.model_name`` for the default workload (so a
    deployment can serve another of its models), the workload's declared ``model_name`` for the others."""
    from core.workload import DEFAULT

    return settings.speed.model_name if workload.name == DEFAULT else workload.model_name


class ModelSet:
    """The models one worker serves, one ``ModelHolder`` per workload: each is swapped on its own, so a swap or a
    refused artifact of one never touches another."""

    def __init__(self, settings, holders: dict[str, ModelHolder] | None = None):
        self.workloads = {wl.name: wl for wl in served_workloads(settings)}
        self.holders = {name: (holders or {}).get(name) or ModelHolder() for name in self.workloads}
        self.by_model = {served_model_name(settings, wl): name for name, wl in self.workloads.items()}

    def workload_of(self, model_name: str) -> Workload | None:
        name = self.by_model.get(model_name)
        return self.workloads[name] if name else None
