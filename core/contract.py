"""A workload's online request, declared as data, and what the layers derive from it.

A workload declares its request once (``workloads/<name>/contract.py``): a key, an event time and typed fields
with their ranges. From that one declaration come

- the pydantic model the endpoint and the stream read every request with (``request_model``), and through it the
  OpenAPI description (``speed/openapi.py``), so the service, the stream's dead-letter reasons and the published
  schema cannot drift apart;
- the prediction event, which echoes the request's fields (``prediction_model``);
- the checks the serving sync applies to events already recorded on the topics (``check_recorded``), with the
  ranges of every release so far (a field's ``recorded`` range), so an old prediction still reaches MySQL.

Pure: pydantic and the standard library, nothing else.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema,
                      create_model)

SCHEMA_VERSION = 1
Kind = Literal["key", "timestamp", "integer", "number", "text", "category"]

# What a timestamp field accepts: RFC 3339 in these years, seconds and offset optional, ``T`` or a space, stated in
# the OpenAPI description as it is enforced. The calendar is in the pattern (month lengths; 29 February in the leap
# years 2004..2096), so every string it admits is a real date-time.
TIMESTAMP_YEARS = (2001, 2099)
_YEAR = r"20(0[1-9]|[1-9][0-9])"
_LEAP_YEAR = r"20(0[48]|[2468][048]|[13579][26])"
_DATE = (rf"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
         rf"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)")
TIMESTAMP_PATTERN = (rf"^{_DATE}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?"
                     r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$")
assert TIMESTAMP_YEARS == (2001, 2099), "TIMESTAMP_PATTERN spells these years out"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
# Not blank: at least one character that is white space neither to Python (``str.isspace``, which the sync and the
# stream read with) nor to ECMAScript (the regex dialect of JSON Schema, which clients validate with). Written as
# an explicit class, so that both dialects read the published pattern alike: ``\S`` differs between them (U+001F
# and U+0085 are space only to Python, U+FEFF only to ECMAScript).
_NOT_BLANK = re.compile(r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")


class Malformed(ValueError):
    """A recorded event that cannot become a row; the message names the field."""


@dataclass(frozen=True)
class RequestField:
    """One field of a request. ``low``/``high`` bound what a new request may hold (inclusive); ``recorded`` is the
    wider range accepted in events already on the topics; ``column`` is its MySQL column in the workload's views
    (None: the field is read and checked, but neither echoed by a prediction nor stored)."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    required: bool = True
    recorded: tuple[float, float] | None = None
    column: str | None = None
    description: str = ""
    values: tuple[str, ...] = ()  # a category's values, exactly as written

    @property
    def bounds(self) -> tuple[float, float] | None:
        return None if self.low is None else (self.low, self.high)

    @property
    def recorded_bounds(self) -> tuple[float, float] | None:
        return self.recorded or self.bounds



def key(name: str, max_len: int = 64, *, column: str | None = None,
        description: str = "Not blank; the key of the event") -> RequestField:
    return RequestField(name, "key", 1, max_len, column=column or name, description=description)


def timestamp(name: str, *, column: str | None = None, description: str = "") -> RequestField:
    return RequestField(name, "timestamp", column=column or name, description=description)


def integer(name: str, low: int, high: int, *, required: bool = True, recorded: tuple[int, int] | None = None,
            column: str | None = None, description: str = "") -> RequestField:
    return RequestField(name, "integer", low, high, required, recorded, column, description)


def number(name: str, low: float, high: float, *, required: bool = True, recorded: tuple[float, float] | None = None,
           column: str | None = None, description: str = "") -> RequestField:
    return RequestField(name, "number", low, high, required, recorded, column, description)


def text(name: str, max_len: int, *, required: bool = True, column: str | None = None,
         description: str = "") -> RequestField:
    """A non-blank string of at most ``max_len`` characters (an id as the source writes it)."""
    return RequestField(name, "text", 1, max_len, required, None, column, description)


def category(name: str, values: tuple[str, ...], *, required: bool = True, column: str | None = None,
             description: str = "") -> RequestField:
    """One of ``values``, exactly."""
    return RequestField(name, "category", required=required, column=column, description=description,
                        values=tuple(values))


@dataclass(frozen=True)
class Request:
    """A workload's request: ``model_name`` names the pydantic model and the OpenAPI schema (e.g. ``TripRequest``).
    The first field must be the key and one field the event time; both are stored."""

    model_name: str
    fields: tuple[RequestField, ...]
    description: str = ""  # the model's docstring and the OpenAPI schema's description

    def __post_init__(self) -> None:
        if not self.fields or self.fields[0].kind != "key":
            raise ValueError(f"{self.model_name}: the first field must be the key (contract.key)")
        if [f.kind for f in self.fields].count("key") != 1:
            raise ValueError(f"{self.model_name}: exactly one key field")
        if [f.kind for f in self.fields].count("timestamp") != 1:
            raise ValueError(f"{self.model_name}: exactly one timestamp field (the event time)")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names) or "schema_version" in names:
            raise ValueError(f"{self.model_name}: field names must be unique and not schema_version")
        for f in self.fields:
            if f.kind in ("integer", "number") and (f.low is None or f.high is None or f.low > f.high):
                raise ValueError(f"{self.model_name}.{f.name}: a {f.kind} needs low <= high")
            if f.kind == "category" and (not f.values or len(set(f.values)) != len(f.values) or "" in f.values):
                raise ValueError(f"{self.model_name}.{f.name}: a category needs distinct, non-empty values")

    @property
    def key(self) -> str:
        return self.fields[0].name

    @property
    def event_time(self) -> str:
        return next(f.name for f in self.fields if f.kind == "timestamp")

    def field(self, name: str) -> RequestField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.model_name} has no field {name!r}")

    @property
    def stored(self) -> tuple[RequestField, ...]:
        """The fields the workload's views keep (a ``column``): the key, the event time and the stored inputs."""
        return tuple(f for f in self.fields if f.column is not None)

    @property
    def echoed(self) -> tuple[RequestField, ...]:
        """The fields a prediction carries along besides its key: the stored ones."""
        return self.stored[1:]


@dataclass(frozen=True)
class Outcome:
    """What happened, sent once it is known (``trips.completed`` for taxi): the request's key, the time it became
    known and the observed value the label derives from. It joins its prediction by the key."""

    model_name: str
    time: str
    value: str
    value_range: tuple[float, float] = (0.0, 1e9)  # inclusive; the sync refuses a recorded value outside it
    positive: bool = False  # a value of 0 is refused too (a duration of zero is no outcome)
    description: str = ""


# ---------------------------------------------------------------------------------------------------- pydantic types

def _integral(value: Any) -> Any:
    """JSON Schema's integer: 161 or 161.0, never "161", true or 161.5."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _timestamp(value: Any) -> Any:
    """A string as the pattern says; a ``datetime`` only from Python (JSON has none) in the years."""
    if isinstance(value, dt.datetime) and TIMESTAMP_YEARS[0] <= value.year <= TIMESTAMP_YEARS[1]:
        return value
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise ValueError(f"must be a date-time string (RFC 3339, e.g. 2026-01-05T08:30:00Z) in "
                         f"{TIMESTAMP_YEARS[0]}..{TIMESTAMP_YEARS[1]}")
    return value


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _not_blank(value: str) -> str:
    if not _NOT_BLANK.search(value):
        raise ValueError("must not be blank")
    return value


def integer_type(low: int, high: int) -> Any:
    """An integer in ``low..high`` (the constraints must precede the validator to reach the JSON schema)."""
    return Annotated[int, Strict(), Field(ge=low, le=high), BeforeValidator(_integral)]


def _pydantic_type(f: RequestField) -> Any:
    if f.kind == "key":
        return Annotated[str, Strict(), Field(min_length=1, max_length=int(f.high)), AfterValidator(_not_blank),
                         WithJsonSchema({"type": "string", "minLength": 1, "maxLength": int(f.high),
                                         "pattern": _NOT_BLANK.pattern, "description": f.description})]
    if f.kind == "timestamp":
        text = (f"RFC 3339 date-time (UTC when no offset is given), years {TIMESTAMP_YEARS[0]}..{TIMESTAMP_YEARS[1]}"
                + (f"; {f.description}" if f.description else ""))
        return Annotated[dt.datetime, BeforeValidator(_timestamp), AfterValidator(_utc),
                         WithJsonSchema({"type": "string", "pattern": TIMESTAMP_PATTERN, "description": text})]
    extra = {"description": f.description} if f.description else {}
    if f.kind == "text":
        return Annotated[str, Strict(), Field(min_length=1, max_length=int(f.high)), AfterValidator(_not_blank),
                         WithJsonSchema({"type": "string", "minLength": 1, "maxLength": int(f.high),
                                         "pattern": _NOT_BLANK.pattern, **extra})]
    if f.kind == "category":
        return Annotated[Literal[f.values], Field(**extra)]
    if f.kind == "integer":
        return Annotated[int, Strict(), Field(ge=int(f.low), le=int(f.high), **extra), BeforeValidator(_integral)]
    return Annotated[float, Strict(), Field(ge=f.low, le=f.high, allow_inf_nan=False, **extra)]


@cache
def request_model(request: Request) -> type[BaseModel]:
    """The pydantic model of ``request``: unknown fields ignored, every declared one typed and bounded."""
    fields: dict[str, Any] = {}
    for f in request.fields:
        typ = _pydantic_type(f)
        fields[f.name] = (typ, ...) if f.required else (typ | None, None)
    fields["schema_version"] = (integer_type(1, SCHEMA_VERSION), SCHEMA_VERSION)
    return create_model(request.model_name, __config__=ConfigDict(extra="ignore"),
                        __doc__=request.description or f"A request (key: {request.key}).",
                        **fields)


@cache
def outcome_model(request: Request, outcome: Outcome) -> type[BaseModel]:
    """The outcome event: the request's key, the time it became known and the observed value."""
    low, high = outcome.value_range
    value = Field(gt=low, le=high) if outcome.positive else Field(ge=low, le=high)
    return create_model(outcome.model_name, __doc__=outcome.description or f"An outcome (key: {request.key}).",
                        schema_version=(int, SCHEMA_VERSION), **{request.key: (str, ...),
                                                                outcome.time: (dt.datetime, ...),
                                                                outcome.value: (float, value)})


_ECHO_TYPES = {"key": str, "timestamp": dt.datetime, "integer": int, "number": float, "text": str, "category": str}


@cache
def prediction_model(request: Request, base: type[BaseModel]) -> type[BaseModel]:
    """The prediction event: ``base``'s fields (version, prediction, times) after the request's key, then every
    other request field, optional, so that live views and drift see the inputs."""
    fields: dict[str, Any] = {request.key: (str, ...)}
    for name, info in base.model_fields.items():
        fields[name] = (info.annotation, info)
    for f in request.echoed:
        fields[f.name] = (_ECHO_TYPES[f.kind] | None, None)
    return create_model("Prediction", __doc__=base.__doc__, **fields)


# ------------------------------------------------------------------------------------- events already recorded

def _recorded_integer(f: RequestField, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    low, high = f.recorded_bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Malformed(f"{f.name}: expected an integer in {int(low)}..{int(high)}")
    return value


def recorded_number(obj: Mapping[str, Any], name: str, low: float, high: float, *, positive: bool = False) -> float:
    """A finite number in ``low..high`` (above 0 too when ``positive``); ``Malformed`` names the field."""
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{name}: expected a number")
    try:
        number = float(value)
    except OverflowError:
        raise Malformed(f"{name}: out of range") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise Malformed(f"{name}: expected a finite number in {low:g}..{high:g}")
    if positive and number <= 0:
        raise Malformed(f"{name}: must be positive")
    return number


def recorded_text(obj: Mapping[str, Any], name: str, max_len: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{name}: expected a non-empty string")
    if len(value) > max_len:
        raise Malformed(f"{name}: longer than {max_len} characters")
    return value


def recorded_timestamp(value: Any, name: str) -> dt.datetime:
    """An ISO-8601 string (``Z``, ``+00:00``, any offset, or none meaning UTC) as naive UTC to the millisecond."""
    if not isinstance(value, str):
        raise Malformed(f"{name}: expected an ISO-8601 timestamp string")
    try:
        ts = dt.datetime.fromisoformat(value)
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise Malformed(f"{name}: not an ISO-8601 timestamp: {value[:40]!r}") from None
    if not TIMESTAMP_YEARS[0] <= ts.year <= TIMESTAMP_YEARS[1]:
        raise Malformed(f"{name}: year {ts.year} outside {TIMESTAMP_YEARS[0]}..{TIMESTAMP_YEARS[1]}")
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)  # DATETIME(3)


def check_recorded_outcome(request: Request, outcome: Outcome, obj: Mapping[str, Any]) -> tuple[str, dt.datetime,
                                                                                            float]:
    """(key, time, value) of a recorded outcome event; ``Malformed`` names the first bad field."""
    key = recorded_text(obj, request.key, int(request.field(request.key).high))
    when = recorded_timestamp(obj.get(outcome.time), outcome.time)
    value = recorded_number(obj, outcome.value, *outcome.value_range, positive=outcome.positive)
    return key, when, value


def check_recorded(request: Request, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The request's fields of a recorded event (a prediction echoes them), checked with the recorded ranges, by
    MySQL column name; ``Malformed`` names the first bad field."""
    out: dict[str, Any] = {}
    for f in request.stored:
        value = obj.get(f.name)
        if f.kind in ("key", "text") and (f.required or value is not None):
            out[f.column] = recorded_text(obj, f.name, int(f.high))
        elif f.kind == "category" and (f.required or value is not None):
            if value not in f.values:
                raise Malformed(f"{f.name}: expected one of {', '.join(f.values)}")
            out[f.column] = value
        elif f.kind == "timestamp":
            out[f.column] = recorded_timestamp(value, f.name)
        elif value is None and not f.required:
            out[f.column] = None
        elif f.kind == "integer":
            out[f.column] = _recorded_integer(f, value)
        else:
            out[f.column] = recorded_number(obj, f.name, *f.recorded_bounds)
    return out
