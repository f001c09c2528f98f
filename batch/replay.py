"""Live replay: a workload's generated rows sent to Kafka as they would arrive from the running service.

Each clean row of a generated day becomes a request (the workload's request model) on its requests topic and,
once the row's outcome is known (the trip or the ride has ended), an outcome event on its completed topic.
Requests go out at a fixed rate in event-time order; an outcome follows its request after the time between the
two divided by a time scale. Optionally some extra request messages are malformed on purpose, to exercise the
dead-letter path downstream.

The workload is reached only through its definition (``core.workload.load``): the columns of its online traffic
(``Workload.online``), its request contract (what a clean row is, what a malformed message spoils) and its
generator (``core.workload.module(name, "generate")``), so the replay names no workload's field.

``plan_day``/``build_plan`` and ``schedule`` are pure; ``replay`` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from core import contract, jsonrows, kafka
from core.contract import Request, RequestField
from core.settings import Settings
from core.workload import DEFAULT, Workload, load, module

DIRTY_SHARE = 0.03  # of the generated rows; the dirty ones that would not be valid requests are skipped
DEFAULT_TIME_SCALE = 300.0  # a 15-minute trip completes 3 s after its request
MALFORMED_PREFIX = "malformed-"
# How a malformed request is spoiled, each derived from the workload's request contract (``_spoil``): not JSON at
# all, no key, a value outside its field's range or values, a value of the wrong JSON type, an event time that is
# no date-time. Every one fails the workload's request model.
MALFORMED_KINDS = ("not_json", "missing_key", "out_of_range", "wrong_type", "bad_timestamp")
PROGRESS_EVERY_S = 5.0
MAX_SLEEP_S = 1.0  # wake at least this often to serve delivery reports and progress
CHECK_EVERY = 512  # messages between two looks at delivery reports and progress when nothing waits
FLUSH_TIMEOUT_S = 60.0
METADATA_TIMEOUT_S = 10.0

_EPOCH = dt.datetime(1970, 1, 1)
_JSON_KINDS: dict[str, jsonrows.Kind] = {"integer": "integer", "number": "number", "text": "string",
                                         "category": "string"}

Kind = Literal["request", "malformed", "completed"]


@dataclass(frozen=True)
class ReplayPlan:
    """The clean rows of one generated day of a workload in event-time order, one array per request field.

    Columnar so that a million rows stay small; messages are built one at a time. ``columns`` holds every request
    field but the key (the plan names rows itself, ``key``) and the event time (``event_us``), by its request
    name; ``valid`` says where an optional field has a value (None: everywhere).
    """

    day: dt.date
    seed: int
    shift: bool
    row: np.ndarray  # index in the generated table: names the row (``key``)
    event_us: np.ndarray  # the request's event time, microseconds since the epoch (naive, as in the raw files)
    outcome_us: np.ndarray  # the outcome's time, likewise
    outcome_value: np.ndarray  # the outcome's observed value (float64)
    columns: dict[str, np.ndarray]
    valid: dict[str, np.ndarray | None]
    workload: str = DEFAULT

    def __len__(self) -> int:
        return len(self.row)

    @cached_property
    def definition(self) -> Workload:
        return load(self.workload)

    @cached_property
    def request_model(self) -> type[BaseModel]:
        return contract.request_model(self.definition.request)

    @cached_property
    def outcome_model(self) -> type[BaseModel]:
        return contract.outcome_model(self.definition.request, self.definition.outcome)

    @cached_property
    def key_name(self) -> str:
        """The request's key field: what ``key`` fills in, and what a bench overrides to send a row anew."""
        return self.definition.request.key

    @cached_property
    def stem(self) -> str:
        return f"{self.day:%Y%m%d}-{self.seed}{'-shift' if self.shift else ''}"

    @property
    def duration_s(self) -> np.ndarray:
        """Seconds from each request to its outcome: what the schedule waits (scaled) before sending the outcome."""
        return (self.outcome_us - self.event_us) / 1e6

    def key(self, j: int) -> str:
        """The key of the ``j``-th row, ``<YYYYMMDD>-<seed>[-shift]-<row>``: the same arguments, the same keys, and
        the stem tells which replay a key came from (``deploy/local/demo.py`` groups live error by it)."""
        return f"{self.stem}-{int(self.row[j]):07d}"

    def keys(self) -> list[str]:
        return [self.key(j) for j in range(len(self))]

    trip_ids = keys  # the name the taxi-only replay had

    def request(self, j: int) -> BaseModel:
        """The ``j``-th request, an instance of the workload's request model."""
        body: dict[str, Any] = {self.key_name: self.key(j),
                                self.definition.request.event_time: _timestamp(self.event_us[j])}
        for name, values in self.columns.items():
            valid = self.valid[name]
            body[name] = None if valid is not None and not valid[j] else _python(values[j])
        return self.request_model(**body)

    def completed(self, j: int) -> BaseModel:
        """The ``j``-th row's outcome event, an instance of the workload's outcome model."""
        outcome = self.definition.outcome
        return self.outcome_model(**{self.key_name: self.key(j), outcome.time: _timestamp(self.outcome_us[j]),
                                     outcome.value: float(self.outcome_value[j])})

    def key_texts(self, rows: np.ndarray) -> list[str]:
        """``key(j)`` of each ``j`` in ``rows``, formatted in one Arrow call."""
        digits = pc.utf8_lpad(pa.array(self.row[rows]).cast(pa.string()), 7, "0")
        return pc.binary_join_element_wise(f"{self.stem}-", digits, "").to_pylist()

    def request_values(self, rows: np.ndarray, keys: list[str]) -> list[bytes]:
        """The JSON of the requests of ``rows`` (under ``keys``): byte for byte ``_json(self.request(j))``, built
        column by column (``core.jsonrows``) rather than one model at a time."""
        columns = []
        for f in self.definition.request.fields:
            if f.kind == "key":
                columns.append(jsonrows.Column(f.name, "string", pa.array(keys, pa.string())))
            elif f.kind == "timestamp":
                columns.append(jsonrows.Column(f.name, "timestamp_utc", self.event_us[rows]))
            else:
                valid = self.valid[f.name]
                columns.append(jsonrows.Column(f.name, _JSON_KINDS[f.kind], self.columns[f.name][rows],
                                               None if valid is None else valid[rows]))
        columns.append(jsonrows.constant("schema_version", contract.SCHEMA_VERSION, len(rows)))
        return jsonrows.encode(columns)

    def completed_values(self, rows: np.ndarray, keys: list[str]) -> list[bytes]:
        """The JSON of the outcomes of ``rows`` (under ``keys``): byte for byte ``_json(self.completed(j))``."""
        outcome = self.definition.outcome
        return jsonrows.encode([jsonrows.constant("schema_version", contract.SCHEMA_VERSION, len(rows)),
                                jsonrows.Column(self.key_name, "string", pa.array(keys, pa.string())),
                                jsonrows.Column(outcome.time, "timestamp", self.outcome_us[rows]),
                                jsonrows.Column(outcome.value, "number", self.outcome_value[rows])])

    def malformed(self, k: int) -> tuple[str, bytes]:
        """(key, value) of the ``k``-th malformed request: a real row spoiled in one of ``MALFORMED_KINDS``."""
        kind = MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
        key = f"{MALFORMED_PREFIX}{kind}-{self.stem}-{k:07d}"
        if kind == "not_json":
            return key, f"{{{self.key_name}: {key}, this is not JSON".encode()
        body = self.request(k % len(self)).model_dump(mode="json")
        body[self.key_name] = key
        if kind == "missing_key":
            del body[self.key_name]
        else:
            name, value = _spoil(self.definition.request, kind)
            body[name] = value
        return key, kafka.encode(body)


@cache
def _spoil(request: Request, kind: str) -> tuple[str, Any]:
    """(field, value) that makes a request of ``request`` fail its model in the way ``kind`` says.

    ``out_of_range``: the first integer or number past its high bound, else the first category off its values,
    else the first text longer than its limit. ``wrong_type``: the first field other than the key and the event
    time holding a value of another JSON type (a string for a number, a number for a string). A contract with no
    such field gets a blank key, or a number for its key, instead. ``bad_timestamp``: an event time that is no
    date-time.
    """
    inputs = [f for f in request.fields if f.kind not in ("key", "timestamp")]
    if kind == "bad_timestamp":
        return request.event_time, "yesterday"
    if kind == "out_of_range":
        for kinds in (("integer", "number"), ("category",), ("text",)):
            for f in (f for f in inputs if f.kind in kinds):
                if f.kind == "integer":
                    return f.name, int(f.high) + 35
                if f.kind == "number":
                    return f.name, f.high + 35
                if f.kind == "category":
                    value = f"not-a-{f.name}"
                    while value in f.values:
                        value += "!"
                    return f.name, value
                return f.name, "x" * (int(f.high) + 1)
        return request.key, ""
    if kind == "wrong_type":
        for f in inputs:
            return f.name, "not a number" if f.kind in ("integer", "number") else 42
        return request.key, 42
    raise ValueError(f"no such malformed kind: {kind!r} (one of {', '.join(MALFORMED_KINDS)})")


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value a strict pydantic field takes (``np.int64`` is no ``int``)."""
    return value.item() if isinstance(value, np.generic) else value


def _timestamp(us: np.integer) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(us))


def _micros(day: dt.date) -> int:
    return (dt.datetime.combine(day, dt.time()) - _EPOCH) // dt.timedelta(microseconds=1)


def _numpy(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _true(condition: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean array as numpy, null counting as false."""
    return _numpy(pc.fill_null(condition, False)).astype(bool)


def _times(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds since the epoch, 0 where null; present)."""
    col = table.column(name).cast(pa.timestamp("us")).cast(pa.int64())
    return _numpy(col.fill_null(0)), _true(pc.is_valid(col))


def _field(table: pa.Table, f: RequestField) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, present, acceptable) of one request field: the values as its request takes them (nulls filled), and
    where a present value is one the request contract accepts."""
    col = table.column(f.name)
    present = _true(pc.is_valid(col))
    if f.kind in ("integer", "number"):
        numbers = _numpy(col.cast(pa.float64()).fill_null(math.nan))
        ok = np.isfinite(numbers) & (numbers >= f.low) & (numbers <= f.high)
        if f.kind == "number":
            return numbers, present, ok
        if pa.types.is_integer(col.type):  # exact, whatever the width
            return _numpy(col.cast(pa.int64()).fill_null(0)), present, ok
        ok &= numbers == np.floor(np.where(ok, numbers, 0.0))
        return np.where(ok, numbers, 0.0).astype(np.int64), present, ok
    text = col.cast(pa.string())
    if f.kind == "category":
        ok = _true(pc.is_in(text, value_set=pa.array(f.values, pa.string())))
    else:  # text: not blank, not too long
        blank = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.utf8_is_space(text))
        ok = _true(pc.and_(pc.invert(blank), pc.less_equal(pc.utf8_length(text), int(f.high))))
    return _numpy(text), present, ok


def build_plan(table: pa.Table, day: dt.date, seed: int, shift: bool = False, limit: int | None = None,
               workload: str = DEFAULT) -> ReplayPlan:
    """The rows of ``table`` (the workload's raw schema) that make valid requests with valid outcomes.

    What is clean comes from the request contract alone: every required field present; an integer or number
    finite and within its bounds, a category one of its values, a text neither blank nor too long (an optional
    field may be null instead); the event time on ``day``, the outcome after it, and the outcome's value within its
    range. A row only the batch validator can judge (an impossible speed needs the outcome's time) is a valid
    request and stays. ``limit`` keeps the first that many clean rows of the table.
    """
    wl = load(workload)
    traffic = wl.online(table)
    request, outcome = wl.request, wl.outcome
    event, clean = _times(traffic, request.event_time)
    ended, has_end = _times(traffic, outcome.time)
    value = _numpy(traffic.column(outcome.value).cast(pa.float64()).fill_null(math.nan))
    low, high = outcome.value_range
    clean = clean & has_end & (ended > event) & np.isfinite(value) & (value >= low) & (value <= high)
    if outcome.positive:
        clean &= value > 0
    clean &= (event >= _micros(day)) & (event < _micros(day + dt.timedelta(days=1)))
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in request.fields:
        if f.kind in ("key", "timestamp"):
            continue
        values, present, ok = _field(traffic, f)
        clean &= (present & ok) if f.required else (~present | ok)
        columns[f.name] = values, present
    rows = np.flatnonzero(clean)[:limit]
    rows = rows[np.argsort(event[rows], kind="stable")]
    valid = {name: None if present[rows].all() else present[rows] for name, (_, present) in columns.items()}
    return ReplayPlan(day=day, seed=seed, shift=shift, row=rows, event_us=event[rows], outcome_us=ended[rows],
                      outcome_value=value[rows], columns={name: v[rows] for name, (v, _) in columns.items()},
                      valid=valid, workload=workload)


def plan_day(day: dt.date, count: int, seed: int = 7, shift: bool = False, workload: str = DEFAULT) -> ReplayPlan:
    """``count`` clean rows of a generated ``day`` of ``workload``; the same arguments give the same plan."""
    if count <= 0:
        raise ValueError("count must be positive")
    generate_day = module(workload, "generate").generate_day
    # Enough rows that at least ``count`` are clean even if every dirty one is skipped.
    rows = math.ceil(count / (1.0 - DIRTY_SHARE)) + 1
    plan = build_plan(generate_day(day, rows, seed=seed, dirty_share=DIRTY_SHARE, shift=shift), day, seed, shift,
                      limit=count, workload=workload)
    if len(plan) < count:
        raise ValueError(f"only {len(plan)} clean rows in {rows} generated {workload} rows, {count} wanted")
    return plan


class Message(NamedTuple):
    offset_s: float  # when to send, from the start of the replay
    kind: Kind
    key: str
    value: bytes


def schedule(plan: ReplayPlan, rate: float, time_scale: float = DEFAULT_TIME_SCALE,
             malformed_share: float = 0.0) -> Iterator[Message]:
    """Every message of the replay, in send order.

    Request messages (valid and malformed) are ``1/rate`` s apart, valid ones in event-time order. A
    row's outcome is due ``duration_s / time_scale`` s after its request (``math.inf``: at once).
    ``round(len(plan) * malformed_share)`` malformed requests are mixed in at seeded positions;
    they have no outcome.
    """
    return (message for chunk in _chunks(plan, rate, time_scale, malformed_share) for message in map(Message, *chunk))


def _order(plan: ReplayPlan, rate: float, time_scale: float,
           n_malformed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind code, index, offset) of every message in send order; the index is the plan's row for a request or an
    outcome, the malformed request's number for a malformed one.

    Slots ``1/rate`` s apart each hold a request, valid or malformed (at seeded positions). An outcome is due
    ``duration_s / time_scale`` s after its request and goes out at the first later slot whose time has reached
    it, ahead of that slot's request, or after the last slot; outcomes that go out together do so in (due, row)
    order. This is what a loop that keeps pending outcomes in a heap sends, computed for all messages at once.
    """
    slots = len(plan) + n_malformed
    rng = np.random.default_rng([plan.seed, plan.day.toordinal(), int(plan.shift), 1])
    is_malformed = np.zeros(slots, dtype=bool)
    is_malformed[rng.choice(slots, size=n_malformed, replace=False)] = True
    offsets = np.arange(slots) / rate
    request_slot = np.flatnonzero(~is_malformed)
    due = offsets[request_slot] + plan.duration_s / time_scale
    sent_at = np.maximum(np.searchsorted(offsets, due, side="left"), request_slot + 1)
    rows = np.arange(len(plan))
    slot_index = np.where(is_malformed, np.cumsum(is_malformed) - 1, np.cumsum(~is_malformed) - 1)
    kind = np.concatenate([is_malformed.astype(np.int8), np.full(len(plan), 2, np.int8)])
    index = np.concatenate([slot_index, rows])
    offset = np.concatenate([offsets, due])
    order = np.lexsort((index, offset, kind != 2, np.concatenate([np.arange(slots), sent_at])))
    return kind[order], index[order], offset[order]


CHUNK = 4096  # messages whose keys and values are built at once
_KINDS: tuple[Kind, ...] = ("request", "malformed", "completed")


def _chunks(plan: ReplayPlan, rate: float, time_scale: float,
            malformed_share: float) -> Iterator[tuple[list[float], list[Kind], list[str], list[bytes]]]:
    """The messages of ``_order`` in chunks of ``CHUNK``: (offsets, kinds, keys, values), each a list.

    Keys and the JSON of requests and outcomes are built a column at a time for the whole chunk
    (``ReplayPlan.request_values``, ``completed_values``); a malformed request (a few at most) one at a time.
    """
    if not rate > 0:
        raise ValueError("rate must be positive")
    if not time_scale > 0:
        raise ValueError("time_scale must be positive")
    if not 0.0 <= malformed_share <= 1.0:
        raise ValueError("malformed_share must be in [0, 1]")
    return _built(plan, *_order(plan, rate, time_scale, round(len(plan) * malformed_share)))


def _built(plan: ReplayPlan, kinds: np.ndarray, indices: np.ndarray,
           offsets: np.ndarray) -> Iterator[tuple[list[float], list[Kind], list[str], list[bytes]]]:
    for start in range(0, len(kinds), CHUNK):
        kind, index = kinds[start:start + CHUNK], indices[start:start + CHUNK]
        keys: list[Any] = [None] * len(kind)
        values: list[Any] = [None] * len(kind)
        for code, build in ((0, plan.request_values), (2, plan.completed_values)):
            where = np.flatnonzero(kind == code)
            if len(where):
                texts = plan.key_texts(index[where])
                for w, key, value in zip(where.tolist(), texts, build(index[where], texts)):
                    keys[w], values[w] = key, value
        for w in np.flatnonzero(kind == 1).tolist():
            keys[w], values[w] = plan.malformed(int(index[w]))
        yield offsets[start:start + CHUNK].tolist(), [_KINDS[c] for c in kind.tolist()], keys, values


def _json(event: BaseModel) -> bytes:
    return kafka.encode(event.model_dump(mode="json"))


class ReplayError(RuntimeError):
    """Kafka is unreachable, a topic is missing, or messages were not delivered."""


@dataclass(frozen=True)
class ReplaySummary:
    requests: int  # valid requests sent, one per key
    completions: int  # outcome events sent
    malformed: int
    elapsed_s: float  # start to the last delivery
    achieved_rate: float  # request messages per second between the first and the last one sent


@dataclass
class _Deliveries:
    failed: int = 0
    first_error: str = ""

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or f"{msg.topic()}: {err}"


def replay(settings: Settings, day: dt.date, count: int, rate: float, seed: int = 7, shift: bool = False,
           time_scale: float = DEFAULT_TIME_SCALE, malformed_share: float = 0.0,
           echo: Callable[[str], None] = print, workload: str = DEFAULT) -> ReplaySummary:
    """Send ``count`` rows of a generated ``day`` of ``workload`` as requests and outcomes, paced as ``schedule``
    says, onto the workload's topics (``KafkaSettings.for_workload``)."""
    chunks = _chunks(plan_day(day, count, seed, shift, workload), rate, time_scale, malformed_share)
    k = settings.kafka
    own = k.for_workload(workload)
    topics: dict[Kind, str] = {"request": own.requests, "malformed": own.requests, "completed": own.completed}
    producer = kafka.producer(settings)
    try:
        existing = producer.list_topics(timeout=METADATA_TIMEOUT_S).topics
    except Exception as exc:  # noqa: BLE001 - KafkaException and friends, reported as one error
        raise ReplayError(f"Kafka at {k.bootstrap} did not answer: {exc}") from exc
    missing = sorted({t for t in topics.values() if t not in existing})
    if missing:
        raise ReplayError(f"topic(s) {', '.join(missing)} do not exist on {k.bootstrap} "
                          "(`lambdaml stack up` creates them)")

    deliveries = _Deliveries()
    sent: dict[Kind, int] = {"request": 0, "malformed": 0, "completed": 0}
    first_request_at: float | None = None
    last_request_at = 0.0
    start = time.monotonic()
    next_progress = start + PROGRESS_EVERY_S

    def check(now: float) -> None:
        nonlocal next_progress
        producer.poll(0)
        if deliveries.failed:
            raise ReplayError(f"Kafka at {k.bootstrap} rejected messages: {deliveries.first_error}")
        if now >= next_progress:
            requests = sent["request"] + sent["malformed"]
            rate_so_far = requests / max(last_request_at - start, 1e-9)
            echo(f"  {now - start:7.1f}s  {requests:,} requests ({rate_so_far:,.0f}/s), "
                 f"{sent['completed']:,} outcomes")
            next_progress = now + PROGRESS_EVERY_S

    # Per message only what must be: wait for its time, produce, note a request's time. Delivery reports, the
    # failure check and progress every CHECK_EVERY messages and while waiting.
    for offsets, kinds, keys, values in chunks:
        for i, (offset, kind, key, value) in enumerate(zip(offsets, kinds, keys, values)):
            due = start + offset
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, MAX_SLEEP_S))
                check(time.monotonic())
            try:
                producer.produce(topics[kind], value, key, on_delivery=deliveries)
            except BufferError:  # the local queue is full: let deliveries drain it
                _produce(producer, topics[kind], key, value, deliveries)
            if kind != "completed":
                first_request_at = now if first_request_at is None else first_request_at
                last_request_at = now
            sent[kind] += 1
            if not i % CHECK_EVERY:
                check(now)
    check(time.monotonic())

    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if remaining or deliveries.failed:
        raise ReplayError(f"{remaining + deliveries.failed} message(s) not delivered to {k.bootstrap}"
                          + (f": {deliveries.first_error}" if deliveries.first_error else ""))
    n_requests = sent["request"] + sent["malformed"]
    span = last_request_at - (first_request_at or 0.0)
    return ReplaySummary(requests=sent["request"], completions=sent["completed"], malformed=sent["malformed"],
                         elapsed_s=time.monotonic() - start,
                         achieved_rate=(n_requests - 1) / span if n_requests > 1 and span > 0 else 0.0)


def _produce(producer: Any, topic: str, key: str, value: bytes, on_delivery: _Deliveries) -> None:
    """Produce once the local queue, full when this is called, has room: deliveries drain it."""
    while True:
        producer.poll(0.1)
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:
            continue
