"""Versioned JSON event schemas carried on Kafka (see the topic contracts in the README)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, WithJsonSchema,
                      field_validator)

from workloads.taxi import tlc

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
# The speed layer's events. One definition serves the HTTP API and the stream: both read a request's bytes with
# ``parse_request`` (the stream in its Python workers), so they accept and refuse exactly the same bytes, with the
# same reason. ``REQUEST_LIMITS`` feeds the model's ranges, the OpenAPI description (built from the model), the
# sync's parsers and the replayer.

PICKUP_YEARS = (2001, 2099)
# The trip's ranges come from the one definition batch validation quarantines by (workloads/taxi/tlc.py): a
# request for a trip that validation would quarantine (an unknown zone 264/265, a distance of 0) is refused here,
# naming the field.
REQUEST_LIMITS = {
    "zone": tlc.KNOWN_ZONES,
    "passenger_count": tlc.PASSENGER_COUNT,
    "trip_distance": tlc.TRIP_DISTANCE_MILES,
    "trip_id_max_len": 64,
    "VendorID": (0, 2**31 - 1),
}
# What the serving sync accepts in events already recorded on the topics: the request contract of every release so
# far (zones 264/265 and a distance of 0 were accepted before the contract took its ranges from validation), so a
# prediction made then still reaches MySQL.
RECORDED_LIMITS = {**REQUEST_LIMITS, "zone": tlc.ZONE_IDS, "trip_distance": (0.0, 500.0)}
# RFC 3339 with the pickup years, seconds and offset optional, ``T`` or a space: what ``pickup_ts`` accepts, stated
# in the OpenAPI description as it is enforced. The calendar is in the pattern (month lengths; 29 February in the
# leap years 2004..2096), so every string it admits is a real date-time.
_YEAR = r"20(0[1-9]|[1-9][0-9])"
_LEAP_YEAR = r"20(0[48]|[2468][048]|[13579][26])"
_DATE = (rf"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
         rf"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)")
PICKUP_TS_PATTERN = (rf"^{_DATE}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?"
                     r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$")
assert PICKUP_YEARS == (2001, 2099), "PICKUP_TS_PATTERN spells these years out"
_PICKUP_TS = re.compile(PICKUP_TS_PATTERN)
_NOT_BLANK = re.compile(r"\S")

def _integral(value: Any) -> Any:
    """JSON Schema's integer: 161 or 161.0, never "161", true or 161.5."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(low: int, high: int) -> Any:
    """An integer field in ``low..high`` (the constraints must precede the validator to reach the JSON schema)."""
    return Annotated[int, Strict(), Field(ge=low, le=high), BeforeValidator(_integral)]


def _number(low: float, high: float) -> Any:
    return Annotated[float, Strict(), Field(ge=low, le=high, allow_inf_nan=False)]


def _pickup_ts(value: Any) -> Any:
    """A string as the pattern says; a ``datetime`` only from Python (JSON has none) in the years."""
    if isinstance(value, dt.datetime) and PICKUP_YEARS[0] <= value.year <= PICKUP_YEARS[1]:
        return value
    if not isinstance(value, str) or not _PICKUP_TS.match(value):
        raise ValueError(f"must be a date-time string (RFC 3339, e.g. 2026-01-05T08:30:00Z) in "
                         f"{PICKUP_YEARS[0]}..{PICKUP_YEARS[1]}")
    return value


def _trip_id(value: str) -> str:
    if not _NOT_BLANK.search(value):
        raise ValueError("must not be blank")
    return value



class TripRequest(BaseModel):
    """``trips.requests`` (key: trip_id), also the body of ``POST /v1/predict``. Read bytes with
    ``parse_request``; construct it directly only from trusted values."""

    model_config = ConfigDict(extra="ignore")
    trip_id: Annotated[str, Strict(), Field(min_length=1, max_length=REQUEST_LIMITS["trip_id_max_len"]),
                       AfterValidator(_trip_id), WithJsonSchema({
                           "type": "string", "minLength": 1, "maxLength": REQUEST_LIMITS["trip_id_max_len"],
                           "pattern": _NOT_BLANK.pattern, "description": "Not blank; the key of the event"})]
    pickup_ts: Annotated[dt.datetime, BeforeValidator(_pickup_ts),
                         WithJsonSchema({"type": "string", "pattern": PICKUP_TS_PATTERN, "description":
                                         "RFC 3339 date-time (UTC when no offset is given), years "
                                         f"{PICKUP_YEARS[0]}..{PICKUP_YEARS[1]}"})]
    PULocationID: _integer(*REQUEST_LIMITS["zone"])
    DOLocationID: _integer(*REQUEST_LIMITS["zone"])
    passenger_count: _integer(*REQUEST_LIMITS["passenger_count"]) | None = None
    trip_distance: _number(*REQUEST_LIMITS["trip_distance"])
    VendorID: _integer(*REQUEST_LIMITS["VendorID"]) | None = None
    schema_version: _integer(1, SCHEMA_VERSION) = SCHEMA_VERSION

    @field_validator("pickup_ts")
    @classmethod
    def _utc(cls, ts: dt.datetime) -> dt.datetime:
        return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)

    def utc_pickup(self) -> dt.datetime:
        return self.pickup_ts


class InvalidRequest(ValueError):
    """A request refused by the contract: ``field`` names what is wrong (``body`` for the JSON itself, or a path
    such as ``trips[3].PULocationID``); ``details`` lists every failing field."""

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


def validate_trip(obj: Any, prefix: tuple = ()) -> TripRequest:
    """One trip object (already read by ``load_json_object``) as a ``TripRequest``, or ``InvalidRequest`` naming
    the first failing field (under ``prefix``, e.g. ``("trips", 3)``)."""
    try:
        return TripRequest.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        fields = [field_path(prefix + tuple(e["loc"])) for e in errors]
        messages = [e["msg"].removeprefix("Value error, ") for e in errors]
        raise InvalidRequest(fields[0], messages[0],
                             [{"field": f, "message": m} for f, m in zip(fields, messages)]) from None


def parse_request(raw: bytes | None) -> TripRequest:
    """One request event's bytes, as the stream reads them and as ``POST /v1/predict`` reads a single trip."""
    return validate_trip(load_json_object(raw))


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
