"""Follows the compacted ``models`` topic and hot-swaps each served workload's production model.

Each worker reads the topic from its beginning (compaction keeps the latest
announcement per model name), so a fresh worker finds the current production
version of every model it serves without asking MySQL, and later announcements — promotions and
rollbacks alike — arrive as they are published. An announcement is only a
pointer: the artifact is fetched from object storage, its sha256 checked
against the announcement, loaded, warmed up and only then swapped in. Anything
wrong leaves the old model serving, counts in ``lambdaml_model_refused_total``
and logs one line saying why. Each model name has its own holder
(``speed.predictor.ModelSet``): one model's swap or refusal never touches another.
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
from speed.predictor import ModelHolder, ModelSet, build

log = logging.getLogger("lambdaml.speed.watcher")


def accept(announcement: dict[str, Any], model_names: str | set[str]) -> bool:
    """Whether an announcement names a production version of a served model."""
    names = {model_names} if isinstance(model_names, str) else model_names
    return announcement.get("name") in names and announcement.get("stage") == "production"


def apply(settings: Settings, holder: ModelHolder, announcement: dict[str, Any], fetch=None,
          workload=None) -> bool:
    """Load ``workload``'s announced version (the default workload's when None) and swap it in. Returns True if it
    now serves; False if refused or unchanged."""
    from core.registry import Registry

    current = holder.current
    version, sha, uri = announcement.get("version"), announcement.get("sha256"), announcement.get("uri")
    if current is not None and current.version == version and current.sha256 == sha:
        return False
    try:
        if not (isinstance(version, str) and isinstance(sha, str) and isinstance(uri, str)):
            raise ArtifactError("announcement lacks version, sha256 or uri", reason="announcement")
        data = (fetch or Registry(settings).fetch)(uri)
        loaded = build(announcement["name"], version, sha, uri, data, device=settings.speed.device,
                       workload=workload)
    except ArtifactError as exc:
        metrics.MODEL_REFUSED.labels(str(announcement.get("name")), exc.reason).inc()
        holder.last_error = f"{version}: {exc}"
        log.error("refused model %s (%s): %s; still serving %s", version, exc.reason, exc,
                  current.version if current else "nothing")
        return False
    old = holder.swap(loaded)
    if old is not None:
        metrics.MODEL_INFO.labels(old.name, old.version).set(0)
    metrics.MODEL_INFO.labels(loaded.name, loaded.version).set(1)
    metrics.MODEL_SWAPS.labels(loaded.name).inc()
    return True


class ModelWatcher(threading.Thread):
    """A daemon thread per worker: catch up on the topic, serve each model's latest version, then follow it."""

    def __init__(self, settings: Settings, models: ModelSet, poll_s: float = 0.5):
        super().__init__(name="model-watcher", daemon=True)
        self.settings = settings
        self.models = models
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
        latest: dict[str, dict[str, Any]] = {}  # by model name
        try:
            while not self._stop.is_set():
                msg = consumer.poll(self.poll_s)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if not self.caught_up.is_set():
                            for announcement in latest.values():
                                self._apply(announcement)
                            self.caught_up.set()
                        continue
                    log.warning("models topic: %s", msg.error())
                    continue
                try:
                    announcement = json.loads(msg.value() or b"null")
                except ValueError:
                    metrics.MODEL_REFUSED.labels("", "announcement").inc()
                    log.error("models topic offset %d: not JSON, ignored", msg.offset())
                    continue
                if not isinstance(announcement, dict) or not accept(announcement, set(self.models.by_model)):
                    continue
                if self.caught_up.is_set():
                    self._apply(announcement)
                else:
                    latest[announcement["name"]] = announcement  # during catch-up only each model's last matters
        finally:
            consumer.close()

    def _apply(self, announcement: dict[str, Any]) -> bool:
        workload = self.models.workload_of(announcement["name"])
        return apply(self.settings, self.models.holders[workload.name], announcement, workload=workload)
