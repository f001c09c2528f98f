"""Versioned JSON event schemas carried on Kafka (see the topic contracts in the README)."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import contract
from core.contract import SCHEMA_VERSION
from core.workload import DEFAULT as DEFAULT_WORKLOAD
from core.workload import load as load_workload


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
# The speed layer's events. One definition serves the HTTP API and the stream: both read a request's bytes with
# ``parse_request`` (the stream in its Python workers), so they accept and refuse exactly the same bytes, with the
# same reason. The request model is derived from the workload's declaration (``workloads/<name>/contract.py``, read
# through ``core.contract``), and so are the OpenAPI description (built from the model) and the sync's checks.

@cache
def request_model_of(workload: str) -> type[BaseModel]:
    """The pydantic request model of a workload (by name), derived once from its declaration."""
    return contract.request_model(load_workload(workload).request)


REQUEST = load_workload(DEFAULT_WORKLOAD).request
TripRequest = request_model_of(DEFAULT_WORKLOAD)
TIMESTAMP_YEARS = contract.TIMESTAMP_YEARS


class InvalidRequest(ValueError):
    """A request refused by the contract: ``field`` names what is wrong (``body`` for the JSON itself, or a path
    such as ``trips[3].<field>``); ``details`` lists every failing field."""

    def __init__(self, field: str, message: str, details: list[dict[str, str]] | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
        self.details = details or [{"field": field, "message": message}]

    @property
    def reason(self) -> str:
        """What a dead letter says: ``not_a_json_object: …`` for the JSON itself, else ``<field>: <message>``."""
        return self.message if self.field == "body" else f"{self.field}: {self.message}"


NOT_A_JSON_OBJECT = "not_a_json_object"


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json_object(raw: bytes | None) -> dict[str, Any]:
    """The body as one JSON object: valid UTF-8 JSON, nothing after it, no key twice in any object, no NaN or
    Infinity. Raises ``InvalidRequest`` on the field ``body`` with a ``not_a_json_object`` reason."""
    if raw is None:
        raise InvalidRequest("body", f"{NOT_A_JSON_OBJECT}: no payload (a tombstone)")
    try:
        body = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _RepeatedKey as exc:
        raise InvalidRequest("body", f"{NOT_A_JSON_OBJECT}: key {str(exc)[:64]!r} appears twice in one object") from None
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, too deep, a number of over 4,300 digits
        raise InvalidRequest("body", f"{NOT_A_JSON_OBJECT}: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"{NOT_A_JSON_OBJECT}: the body is JSON but not an object")
    return body


def field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validate_trip(obj: Any, prefix: tuple = ()) -> BaseModel:
    """One trip object (already read by ``load_json_object``) as a ``TripRequest``, or ``InvalidRequest`` naming
    the first failing field (under ``prefix``, e.g. ``("trips", 3)``)."""
    return validate_request(TripRequest, obj, prefix)


def validate_request(model: type[BaseModel], obj: Any, prefix: tuple = ()) -> BaseModel:
    """One request object of any workload (its ``request_model_of``), or ``InvalidRequest`` naming the first
    failing field (under ``prefix``, e.g. ``("rides", 3)``)."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        fields = [field_path(prefix + tuple(e["loc"])) for e in errors]
        messages = [e["msg"].removeprefix("Value error, ") for e in errors]
        raise InvalidRequest(fields[0], messages[0],
                             [{"field": f, "message": m} for f, m in zip(fields, messages)]) from None


def parse_request(raw: bytes | None, model: type[BaseModel] | None = None) -> BaseModel:
    """One request event's bytes, as the stream reads them and as ``POST /v1/predict`` reads a single trip
    (``model``: another workload's request model, ``request_model_of``)."""
    return validate_request(model or TripRequest, load_json_object(raw))


class _PredictionBase(BaseModel):
    """``trips.predictions`` (key: the request's key). The request's stored inputs ride along for live views and
    drift (``core.contract.prediction_model`` adds them)."""

    schema_version: int = SCHEMA_VERSION
    model_version: str
    predicted_duration_s: float
    event_ts: dt.datetime
    scored_ts: dt.datetime = Field(default_factory=_now)


Prediction = contract.prediction_model(REQUEST, _PredictionBase)


TripCompleted = contract.outcome_model(REQUEST, load_workload(DEFAULT_WORKLOAD).outcome)


class MetricEvent(BaseModel):
    """``metrics`` (key: source)."""

    schema_version: int = SCHEMA_VERSION
    source: str
    name: str
    value: float
    tags: dict[str, str] = Field(default_factory=dict)
    ts: dt.datetime = Field(default_factory=_now)
