"""Small model artifacts for tests of the speed layer: untrained but valid, distinct per seed, of any workload."""

from __future__ import annotations

import torch

from core.model import ModelConfig, WideAndDeep
from core.registry import Artifact, sha256
from core.workload import load


def artifact_bytes(seed: int, label_mean: float = 6.5, workload: str = "taxi") -> bytes:
    wl = load(workload)
    torch.manual_seed(seed)
    config = ModelConfig(widths={name: 2 for name in wl.model.widths}, hidden=[8])
    model = WideAndDeep(config, label_mean=label_mean, architecture=wl.model)
    with torch.no_grad():
        for emb in model.wide.values():  # zero at init: let the wide part tell seeds apart too
            emb.weight.normal_(0.0, 0.1)
    return Artifact(model.state_dict(), config.to_dict(), wl.features.spec_version(),
                    metrics={"seed": seed}).to_bytes()


def announcement(name: str, version: str, uri: str, data: bytes) -> dict:
    return {"schema_version": 1, "name": name, "version": version, "uri": uri, "sha256": sha256(data),
            "metrics": {}, "stage": "production", "created_at": "2026-01-01T00:00:00+00:00"}
