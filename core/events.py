"""Versioned JSON event schemas carried on Kafka (see the topic contracts in the README)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


# ---------------------------------------------------------------------------------------------------------------------
# The speed layer's events. One definition serves the HTTP API (pydantic), the stream's Spark validation
# (``REQUEST_LIMITS``, read by ``speed/stream.py``) and the replayer, so the three accept the same trips.

PICKUP_YEARS = (2001, 2099)
REQUEST_LIMITS = {
    "zone": (1, 265),
    "passenger_count": (0, 9),
    "trip_distance": (0.0, 500.0),
    "trip_id_max_len": 64,
}


class TripRequest(BaseModel):
    """``trips.requests`` (key: trip_id), also the body of ``POST /v1/predict``."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    trip_id: str = Field(min_length=1, max_length=REQUEST_LIMITS["trip_id_max_len"])
    pickup_ts: dt.datetime
    PULocationID: int = Field(ge=REQUEST_LIMITS["zone"][0], le=REQUEST_LIMITS["zone"][1])
    DOLocationID: int = Field(ge=REQUEST_LIMITS["zone"][0], le=REQUEST_LIMITS["zone"][1])
    passenger_count: int | None = Field(default=None, ge=REQUEST_LIMITS["passenger_count"][0],
                                        le=REQUEST_LIMITS["passenger_count"][1])
    trip_distance: float = Field(ge=REQUEST_LIMITS["trip_distance"][0], le=REQUEST_LIMITS["trip_distance"][1],
                                 allow_inf_nan=False)
    VendorID: int | None = None
    schema_version: int = SCHEMA_VERSION

    @field_validator("pickup_ts")
    @classmethod
    def _utc_in_range(cls, ts: dt.datetime) -> dt.datetime:
        if not PICKUP_YEARS[0] <= ts.year <= PICKUP_YEARS[1]:
            raise ValueError(f"pickup year must be in {PICKUP_YEARS[0]}..{PICKUP_YEARS[1]}")
        return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)

    def utc_pickup(self) -> dt.datetime:
        return self.pickup_ts


class Prediction(BaseModel):
    """``trips.predictions`` (key: trip_id). The request's inputs ride along for live views and drift."""

    schema_version: int = SCHEMA_VERSION
    trip_id: str
    model_version: str
    predicted_duration_s: float
    event_ts: dt.datetime
    scored_ts: dt.datetime = Field(default_factory=_now)
    pickup_ts: dt.datetime | None = None
    PULocationID: int | None = None
    DOLocationID: int | None = None
    passenger_count: int | None = None
    trip_distance: float | None = None


class TripCompleted(BaseModel):
    """``trips.completed`` (key: trip_id): the actual outcome, sent when the trip ends."""

    schema_version: int = SCHEMA_VERSION
    trip_id: str
    dropoff_ts: dt.datetime
    duration_s: float


class MetricEvent(BaseModel):
    """``metrics`` (key: source)."""

    schema_version: int = SCHEMA_VERSION
    source: str
    name: str
    value: float
    tags: dict[str, str] = Field(default_factory=dict)
    ts: dt.datetime = Field(default_factory=_now)
