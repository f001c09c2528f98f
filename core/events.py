"""Versioned JSON event schemas carried on Kafka (see the topic contracts in the README)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BatchEvent(BaseModel):
    """``batch.events``: one step of a batch DAG run finished (key: dag_id/run_id)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    dag_id: str
    run_id: str
    step: str
    status: Literal["success", "failed"]
    rows: int = Field(ge=0)
    uri: str
    ts: dt.datetime = Field(default_factory=_now)

    @property
    def key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"


def publish_batch_event(settings, event: BatchEvent) -> None:
    from core import kafka

    producer = kafka.producer(settings)
    producer.produce(settings.kafka.batch_events_topic, key=event.key.encode(), value=event.model_dump_json().encode())
    if producer.flush(30) != 0:
        raise RuntimeError(f"could not deliver the {event.step} event to {settings.kafka.batch_events_topic}")
