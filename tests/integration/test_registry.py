"""The registry on the real stack: artifact on S3, index in MariaDB, announcements on Kafka."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition

from core import features
from core import kafka as k
from core.model import ModelConfig, WideAndDeep
from core.registry import Artifact, ArtifactError, Registry


def _artifact(seed: int) -> Artifact:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden=[8])
    return Artifact(WideAndDeep(cfg).state_dict(), cfg.to_dict(), features.spec_version(), metrics={"seed": seed})


def _latest_announcement(settings, name: str) -> dict | None:
    consumer = k.consumer(settings, group_id=f"it-reg-{name}")
    low, high = consumer.get_watermark_offsets(TopicPartition(settings.kafka.models_topic, 0), timeout=10)
    consumer.assign([TopicPartition(settings.kafka.models_topic, 0, low)])
    latest, deadline = None, time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            if msg.key() == name.encode():
                latest = k.decode(msg.value())
            if msg.offset() >= high - 1:
                break
    finally:
        consumer.close()
    return latest


def test_register_promote_rollback_and_refuse_corruption(stack, settings, unique):
    reg = Registry(settings)
    name = f"it_model_{unique}"
    v1 = reg.register(name, _artifact(1), params={"lr": 0.1}, data_partitions=["raw/trips/pickup_date=2026-11-20"])
    v2 = reg.register(name, _artifact(2), params={"lr": 0.2}, data_partitions=["raw/trips/pickup_date=2026-11-21"])
    assert v1.version.startswith(f"{name}:1.0.0-") and v2.version.startswith(f"{name}:1.1.0-")
    assert reg.load(v1).metrics == {"seed": 1}

    reg.promote(name, v1.version)
    reg.promote(name, v2.version)
    assert reg.production(name).version == v2.version
    assert _latest_announcement(settings, name)["version"] == v2.version

    back = reg.rollback(name)
    assert back.version == v1.version and reg.production(name).version == v1.version
    stages = {v.version: v.stage for v in reg.list(name)}
    assert stages == {v1.version: "production", v2.version: "archived"}
    announced = _latest_announcement(settings, name)
    assert announced["version"] == v1.version and announced["sha256"] == v1.sha256

    # Overwrite the stored artifact with garbage: loading must refuse it.
    reg._put(v2.artifact_uri, b"not a model")
    with pytest.raises(ArtifactError):
        reg.load(reg.get(name, v2.version))
