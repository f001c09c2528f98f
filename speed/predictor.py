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

from core.events import TripRequest
from core.registry import Artifact, ArtifactError
from core.workload import default as default_workload

log = logging.getLogger("lambdaml.speed")
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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "uri": self.uri,
                "device": self.device, "metrics": self.metrics, "loaded_at": self.loaded_at.isoformat()}


def request_columns(trips: Sequence[TripRequest]) -> dict[str, np.ndarray]:
    """Validated requests to the input columns of ``workloads.taxi.features`` (the in-process form)."""
    return {
        "pickup_ts": np.array([t.pickup_ts.replace(tzinfo=None) for t in trips], dtype="datetime64[us]"),
        "PULocationID": np.fromiter((t.PULocationID for t in trips), dtype="float64", count=len(trips)),
        "DOLocationID": np.fromiter((t.DOLocationID for t in trips), dtype="float64", count=len(trips)),
        "passenger_count": np.fromiter((np.nan if t.passenger_count is None else t.passenger_count for t in trips),
                                       dtype="float64", count=len(trips)),
        "trip_distance": np.fromiter((t.trip_distance for t in trips), dtype="float64", count=len(trips)),
    }


def predict(model: LoadedModel, trips: Sequence[TripRequest]) -> np.ndarray:
    """Predicted durations in seconds, one per trip (features by their in-process form)."""
    if not trips:
        return np.zeros(0)
    return predict_features(model, features.compute_numpy(request_columns(trips)))


def predict_features(model: LoadedModel, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Predicted durations in seconds from feature columns already computed (e.g. by the Spark form)."""
    import torch

    from core.model import to_tensors

    cat, num = to_tensors(columns, device=model.device)
    with torch.inference_mode():
        out = (model.runner or model.module)(cat, num).float()
    return default_workload().task.output(out).cpu().numpy().astype("float64")


def check_feature_columns(body: object, max_rows: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """``{"trip_ids": [...], "features": {name: [...]}}`` to ids and columns; ``ValueError("<field>: why")`` if not."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object with trip_ids and features")
    ids, cols = body.get("trip_ids"), body.get("features")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError("trip_ids: must be a non-empty list of strings")
    if len(ids) > max_rows:
        raise OverflowError(f"trip_ids: {len(ids)} rows is over the limit of {max_rows}")
    if not isinstance(cols, dict):
        raise ValueError("features: must be an object of feature columns")
    out: dict[str, np.ndarray] = {}
    for f in features.FEATURES:
        values = cols.get(f.name)
        if not isinstance(values, list) or len(values) != len(ids):
            raise ValueError(f"features.{f.name}: must be a list of {len(ids)} numbers")
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
    return ids, out


_WARMUP = TripRequest(trip_id="warmup", pickup_ts=dt.datetime(2026, 1, 5, 8, 30), PULocationID=161,
                      DOLocationID=236, passenger_count=1, trip_distance=2.1)


def build(name: str, version: str, sha256: str, uri: str, data: bytes, device: str = "cpu") -> LoadedModel:
    """Verify and load an artifact, then warm it up. Raises ``ArtifactError`` on anything wrong."""
    artifact = Artifact.from_bytes(data, expected_sha256=sha256)
    try:
        module = artifact.build_model().to(device)
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
    loaded = LoadedModel(name, version, sha256, uri, module, device, dict(artifact.metrics), runner=runner)
    for size in (1, 64):  # first calls allocate; do that before serving
        out = predict(loaded, [_WARMUP] * size)
        if not np.all(np.isfinite(out)):
            raise ArtifactError("artifact predicts non-finite durations", reason="model")
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
