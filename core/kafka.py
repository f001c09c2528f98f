"""Kafka helpers shared by every layer: client configs, topics, JSON events."""

from __future__ import annotations

import json
import time
from typing import Any

from core.settings import Settings


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": settings.kafka.bootstrap, **extra}


def producer(settings: Settings, **extra: Any):
    from confluent_kafka import Producer

    conf = client_config(
        settings,
        **{"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "lz4"},
    )
    conf.update(extra)
    return Producer(conf)


def consumer(settings: Settings, group_id: str, **extra: Any):
    from confluent_kafka import Consumer

    conf = client_config(
        settings,
        **{"group.id": group_id, "auto.offset.reset": "earliest", "enable.auto.commit": False},
    )
    conf.update(extra)
    return Consumer(conf)


# librdkafka's syslog levels: 5 = notice. An AdminClient serves its results on a background thread; when the
# handle is freed right after a call, that thread can stop with one reply left in its queue, and librdkafka
# reports it at info level (6): "Purging 1 unserved events from background queue". The result was already
# delivered, so it is noise; AdminClient has no close() to wait on. Notices, warnings and errors still print.
ADMIN_LOG_LEVEL = 5


def admin_client(settings: Settings, **extra: Any):
    """An AdminClient that does not print librdkafka's info-level shutdown chatter."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_config(settings, **{"log_level": ADMIN_LOG_LEVEL, **extra}))


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    k = settings.kafka
    # With acks=all, a write is acknowledged once this many replicas hold it.
    durability = {"min.insync.replicas": str(k.min_insync_replicas)} if k.min_insync_replicas > 1 else {}
    if topic in k.compacted_topics:
        # Latest announcement per model name survives forever.
        return {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000", **durability}
    return durability


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the platform's topics that do not exist yet. Returns those created."""
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    k = settings.kafka
    wanted = [
        NewTopic(
            t,
            num_partitions=1 if t in k.compacted_topics else k.partitions,
            replication_factor=k.replication_factor,
            config=topic_configs(settings, t),
        )
        for t in k.topics
        if t not in existing
    ]
    if not wanted:
        return []
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    created = [t.topic for t in wanted]
    _wait_until_visible(admin, created, timeout)
    return created


def _wait_until_visible(admin: Any, topics: list[str], timeout: float) -> None:
    """Wait until the cluster's metadata shows every topic with a leader for each partition.

    The controller acknowledges a creation before every broker has the new metadata, so a client that asks
    another broker right away can be told the topic does not exist."""
    deadline = time.monotonic() + timeout
    pending = set(topics)
    while pending:
        listed = admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
        pending = {t for t in pending
                   if t not in listed or listed[t].error is not None
                   or not listed[t].partitions or any(p.leader < 0 for p in listed[t].partitions.values())}
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic(s) {', '.join(sorted(pending))} created but not in the cluster's metadata "
                               f"after {timeout:.0f} s")
        time.sleep(0.1)


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def decode(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise ValueError("empty message")
    return json.loads(raw)
