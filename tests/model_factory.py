"""Small model artifacts for tests of the speed layer: untrained but valid, distinct per seed."""

from __future__ import annotations

import torch

from core.model import ModelConfig, WideAndDeep
from core.registry import Artifact, sha256
from workloads.taxi.features import spec_version


def artifact_bytes(seed: int, label_mean: float = 6.5) -> bytes:
    torch.manual_seed(seed)
    config = ModelConfig(widths={"zone": 4, "time": 2}, hidden=[8])
    model = WideAndDeep(config, label_mean=label_mean)
    return Artifact(model.state_dict(), config.to_dict(), spec_version(), metrics={"seed": seed}).to_bytes()


def announcement(name: str, version: str, uri: str, data: bytes) -> dict:
    return {"schema_version": 1, "name": name, "version": version, "uri": uri, "sha256": sha256(data),
            "metrics": {}, "stage": "production", "created_at": "2026-01-01T00:00:00+00:00"}
