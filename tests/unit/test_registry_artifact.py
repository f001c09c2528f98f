from __future__ import annotations

import datetime as dt

import pytest
import torch

from core.model import ModelConfig, WideAndDeep
from core.registry import Artifact, ArtifactError, make_version, sha256
from workloads.taxi import features


def artifact() -> Artifact:
    cfg = ModelConfig(hidden=[8])
    model = WideAndDeep(cfg)
    return Artifact(model.state_dict(), cfg.to_dict(), features.spec_version(), metrics={"mae_s": 1.0})


def test_round_trip_rebuilds_the_same_model():
    a = artifact()
    data = a.to_bytes()
    b = Artifact.from_bytes(data, expected_sha256=sha256(data))
    for x, y in zip(a.state_dict.values(), b.build_model().state_dict().values()):
        assert torch.equal(x, y)


def test_corrupt_or_mismatched_artifacts_are_refused():
    data = artifact().to_bytes()
    with pytest.raises(ArtifactError, match="sha256"):
        Artifact.from_bytes(data, expected_sha256="0" * 64)
    truncated = data[: len(data) // 2]
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        Artifact.from_bytes(truncated, expected_sha256=sha256(truncated))
    stale = artifact()
    stale.feature_spec = "fs1-0000000000"
    with pytest.raises(ArtifactError, match="features"):
        stale.build_model()


def test_version_format():
    v = make_version("trip_duration", 4, dt.datetime(2026, 11, 23, 10, 15), "abc1234")
    assert v == "trip_duration:1.4.0-20261123T1015-abc1234"
