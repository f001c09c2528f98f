"""Follows the compacted ``models`` topic and hot-swaps the production model.

Each worker reads the topic from its beginning (compaction keeps the latest
announcement per model name), so a fresh worker finds the current production
version without asking MySQL, and later announcements — promotions and
rollbacks alike — arrive as they are published. An announcement is only a
pointer: the artifact is fetched from object storage, its sha256 checked
against the announcement, loaded, warmed up and only then swapped in. Anything
wrong leaves the old model serving, counts in ``lambdaml_model_refused_total``
and logs one line saying why.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from typing import Any

from core.registry import ArtifactError
from core.settings import Settings
from speed import metrics
from speed.predictor import ModelHolder, build

log = logging.getLogger("lambdaml.speed.watcher")


def accept(announcement: dict[str, Any], model_name: str) -> bool:
    """Whether an announcement names a production version of the served model."""
    return announcement.get("name") == model_name and announcement.get("stage") == "production"


def apply(settings: Settings, holder: ModelHolder, announcement: dict[str, Any], fetch=None) -> bool:
    """Load and swap in the announced version. Returns True if it now serves; False if refused or unchanged."""
    from core.registry import Registry

    current = holder.current
    version, sha, uri = announcement.get("version"), announcement.get("sha256"), announcement.get("uri")
    if current is not None and current.version == version and current.sha256 == sha:
        return False
    try:
        if not (isinstance(version, str) and isinstance(sha, str) and isinstance(uri, str)):
            raise ArtifactError("announcement lacks version, sha256 or uri", reason="announcement")
        data = (fetch or Registry(settings).fetch)(uri)
        loaded = build(announcement["name"], version, sha, uri, data, device=settings.speed.device)
    except ArtifactError as exc:
        metrics.MODEL_REFUSED.labels(exc.reason).inc()
        holder.last_error = f"{version}: {exc}"
        log.error("refused model %s (%s): %s; still serving %s", version, exc.reason, exc,
                  current.version if current else "nothing")
        return False
    old = holder.swap(loaded)
    if old is not None:
        metrics.MODEL_INFO.labels(old.name, old.version).set(0)
    metrics.MODEL_INFO.labels(loaded.name, loaded.version).set(1)
    metrics.MODEL_SWAPS.inc()
    return True


class ModelWatcher(threading.Thread):
    """A daemon thread per worker: catch up on the topic, serve its latest version, then follow it."""

    def __init__(self, settings: Settings, holder: ModelHolder, poll_s: float = 0.5):
        super().__init__(name="model-watcher", daemon=True)
        self.settings = settings
        self.holder = holder
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.caught_up = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        from core import kafka

        topic = self.settings.kafka.models_topic
        consumer = kafka.consumer(self.settings, f"speed-watcher-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                                  **{"enable.partition.eof": True})
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        latest: dict[str, Any] | None = None
        try:
            while not self._stop.is_set():
                msg = consumer.poll(self.poll_s)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if not self.caught_up.is_set():
                            if latest is not None:
                                apply(self.settings, self.holder, latest)
                            self.caught_up.set()
                        continue
                    log.warning("models topic: %s", msg.error())
                    continue
                try:
                    announcement = json.loads(msg.value() or b"null")
                except ValueError:
                    metrics.MODEL_REFUSED.labels("announcement").inc()
                    log.error("models topic offset %d: not JSON, ignored", msg.offset())
                    continue
                if not isinstance(announcement, dict) or not accept(announcement, self.settings.speed.model_name):
                    continue
                if self.caught_up.is_set():
                    apply(self.settings, self.holder, announcement)
                else:
                    latest = announcement  # during catch-up only the last one matters
        finally:
            consumer.close()
