"""Live replay: generated trips sent to Kafka as they would arrive from a running fleet.

Each clean trip of a generated day becomes a ``TripRequest`` on the requests
topic and, once the trip is over, a ``TripCompleted`` on the completed topic.
Requests go out at a fixed rate in pickup order; a completion follows its
request after the trip's duration divided by a time scale. Optionally some
extra request messages are malformed on purpose, to exercise the dead-letter
path downstream.

``plan_day``/``build_plan`` and ``schedule`` are pure; ``replay`` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import kafka
from core.events import REQUEST, TripCompleted, TripRequest
from core.settings import Settings
from workloads.taxi import tlc
from workloads.taxi.generate import generate_day

DIRTY_SHARE = 0.03  # of the generated rows; the dirty ones that would not be valid requests are skipped
DEFAULT_TIME_SCALE = 300.0  # a 15-minute trip completes 3 s after its request
MALFORMED_PREFIX = "malformed-"
MALFORMED_KINDS = ("not_json", "missing_trip_id", "zone_out_of_range", "negative_distance", "wrong_type")
PROGRESS_EVERY_S = 5.0
MAX_SLEEP_S = 1.0  # wake at least this often to serve delivery reports and progress
FLUSH_TIMEOUT_S = 60.0
METADATA_TIMEOUT_S = 10.0

_EPOCH = dt.datetime(1970, 1, 1)
_MISSING = -1  # stands for null in the integer columns of a plan

Kind = Literal["request", "malformed", "completed"]


@dataclass(frozen=True)
class ReplayPlan:
    """The clean trips of one generated day in pickup order, one array per field.

    Columnar so that a million trips stay small; messages are built one at a time.
    """

    day: dt.date
    seed: int
    shift: bool
    row: np.ndarray  # index in the generated table: names the trip
    pickup_us: np.ndarray  # microseconds since the epoch, naive local time as in the TLC files
    dropoff_us: np.ndarray
    pu: np.ndarray
    do: np.ndarray
    passengers: np.ndarray  # _MISSING where null
    distance: np.ndarray
    vendor: np.ndarray  # _MISSING where null

    def __len__(self) -> int:
        return len(self.row)

    @cached_property
    def stem(self) -> str:
        return f"{self.day:%Y%m%d}-{self.seed}{'-shift' if self.shift else ''}"

    @property
    def duration_s(self) -> np.ndarray:
        return (self.dropoff_us - self.pickup_us) / 1e6

    def trip_id(self, j: int) -> str:
        return f"{self.stem}-{int(self.row[j]):07d}"

    def trip_ids(self) -> list[str]:
        return [self.trip_id(j) for j in range(len(self))]

    def request(self, j: int) -> TripRequest:
        passengers, vendor = int(self.passengers[j]), int(self.vendor[j])
        return TripRequest(
            trip_id=self.trip_id(j),
            pickup_ts=_timestamp(self.pickup_us[j]),
            PULocationID=int(self.pu[j]),
            DOLocationID=int(self.do[j]),
            passenger_count=None if passengers == _MISSING else passengers,
            trip_distance=float(self.distance[j]),
            VendorID=None if vendor == _MISSING else vendor,
        )

    def completed(self, j: int) -> TripCompleted:
        return TripCompleted(trip_id=self.trip_id(j), dropoff_ts=_timestamp(self.dropoff_us[j]),
                             duration_s=int(self.dropoff_us[j] - self.pickup_us[j]) / 1e6)

    def malformed(self, k: int) -> tuple[str, bytes]:
        """(key, value) of the ``k``-th malformed request: a real trip spoiled in one of ``MALFORMED_KINDS``."""
        kind = MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
        trip_id = f"{MALFORMED_PREFIX}{kind}-{self.stem}-{k:07d}"
        if kind == "not_json":
            return trip_id, f"{{trip_id: {trip_id}, this is not JSON".encode()
        body = self.request(k % len(self)).model_dump(mode="json")
        body["trip_id"] = trip_id
        if kind == "missing_trip_id":
            del body["trip_id"]
        elif kind == "zone_out_of_range":
            body["PULocationID"] = REQUEST.field("PULocationID").high + 35
        elif kind == "negative_distance":
            body["trip_distance"] = -abs(body["trip_distance"]) - 0.5
        elif kind == "wrong_type":
            body["PULocationID"] = "Midtown"
        return trip_id, kafka.encode(body)


def _timestamp(us: np.integer) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(us))


def _micros(day: dt.date) -> int:
    return (dt.datetime.combine(day, dt.time()) - _EPOCH) // dt.timedelta(microseconds=1)


def _column(table: pa.Table, name: str, typ: pa.DataType, fill: Any) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls replaced by ``fill``, validity mask)."""
    col = table.column(name).cast(typ)
    return col.fill_null(fill).to_numpy(), pc.is_valid(col).to_numpy()


def build_plan(table: pa.Table, day: dt.date, seed: int, shift: bool = False, limit: int | None = None) -> ReplayPlan:
    """The trips of ``table`` (``tlc.RAW_SCHEMA``) that make valid ``TripRequest``s and end after they start.

    Rows failing on zones (unknown zones 264/265 included), distance (0 included), passenger count or
    timestamps (missing, not ending after the pickup, picked up on another day than ``day``) are skipped;
    rows only the batch validator can judge (an impossible speed needs the dropoff time) are valid requests
    and stay. ``limit`` keeps the first that many clean rows of the table.
    """
    pickup, has_pickup = _column(table, tlc.PICKUP, pa.int64(), 0)
    dropoff, has_dropoff = _column(table, tlc.DROPOFF, pa.int64(), 0)
    pu, has_pu = _column(table, "PULocationID", pa.int64(), _MISSING)
    do, has_do = _column(table, "DOLocationID", pa.int64(), _MISSING)
    distance, has_distance = _column(table, "trip_distance", pa.float64(), math.nan)
    passengers, has_passengers = _column(table, "passenger_count", pa.int64(), _MISSING)
    vendor, _ = _column(table, "VendorID", pa.int64(), _MISSING)

    zone_lo, zone_hi = REQUEST.field("PULocationID").bounds
    dist_lo, dist_hi = REQUEST.field("trip_distance").bounds
    pass_lo, pass_hi = REQUEST.field("passenger_count").bounds
    clean = (
        has_pickup & has_dropoff & has_pu & has_do & has_distance
        & (dropoff > pickup)
        & (pu >= zone_lo) & (pu <= zone_hi) & (do >= zone_lo) & (do <= zone_hi)
        & np.isfinite(distance) & (distance >= dist_lo) & (distance <= dist_hi)
        & (~has_passengers | ((passengers >= pass_lo) & (passengers <= pass_hi)))
    )
    on_day = (pickup >= _micros(day)) & (pickup < _micros(day + dt.timedelta(days=1)))
    rows = np.flatnonzero(clean & on_day)[:limit]
    rows = rows[np.argsort(pickup[rows], kind="stable")]
    return ReplayPlan(day=day, seed=seed, shift=shift, row=rows, pickup_us=pickup[rows], dropoff_us=dropoff[rows],
                      pu=pu[rows], do=do[rows], passengers=passengers[rows], distance=distance[rows],
                      vendor=vendor[rows])


def plan_day(day: dt.date, count: int, seed: int = 7, shift: bool = False) -> ReplayPlan:
    """``count`` clean trips of a generated ``day``; the same arguments give the same plan."""
    if count <= 0:
        raise ValueError("count must be positive")
    # Enough rows that at least ``count`` are clean even if every dirty one is skipped.
    rows = math.ceil(count / (1.0 - DIRTY_SHARE)) + 1
    plan = build_plan(generate_day(day, rows, seed=seed, dirty_share=DIRTY_SHARE, shift=shift), day, seed, shift,
                      limit=count)
    if len(plan) < count:
        raise ValueError(f"only {len(plan)} clean trips in {rows} generated rows, {count} wanted")
    return plan


class Message(NamedTuple):
    offset_s: float  # when to send, from the start of the replay
    kind: Kind
    key: str
    value: bytes


def schedule(plan: ReplayPlan, rate: float, time_scale: float = DEFAULT_TIME_SCALE,
             malformed_share: float = 0.0) -> Iterator[Message]:
    """Every message of the replay, in send order.

    Request messages (valid and malformed) are ``1/rate`` s apart, valid ones in pickup order. A
    trip's completion is due ``duration_s / time_scale`` s after its request (``math.inf``: at once).
    ``round(len(plan) * malformed_share)`` malformed requests are mixed in at seeded positions;
    they have no completion.
    """
    if not rate > 0:
        raise ValueError("rate must be positive")
    if not time_scale > 0:
        raise ValueError("time_scale must be positive")
    if not 0.0 <= malformed_share <= 1.0:
        raise ValueError("malformed_share must be in [0, 1]")
    return _messages(plan, rate, time_scale, round(len(plan) * malformed_share))


def _messages(plan: ReplayPlan, rate: float, time_scale: float, n_malformed: int) -> Iterator[Message]:
    slots = len(plan) + n_malformed
    rng = np.random.default_rng([plan.seed, plan.day.toordinal(), int(plan.shift), 1])
    is_malformed = np.zeros(slots, dtype=bool)
    is_malformed[rng.choice(slots, size=n_malformed, replace=False)] = True
    durations = plan.duration_s

    pending: list[tuple[float, int]] = []  # (due, trip) of completions not sent yet
    trip = malformed = 0
    for slot in range(slots):
        offset = slot / rate
        while pending and pending[0][0] <= offset:
            due, j = heapq.heappop(pending)
            yield Message(due, "completed", plan.trip_id(j), _json(plan.completed(j)))
        if is_malformed[slot]:
            key, value = plan.malformed(malformed)
            yield Message(offset, "malformed", key, value)
            malformed += 1
        else:
            yield Message(offset, "request", plan.trip_id(trip), _json(plan.request(trip)))
            heapq.heappush(pending, (offset + durations[trip] / time_scale, trip))
            trip += 1
    while pending:
        due, j = heapq.heappop(pending)
        yield Message(due, "completed", plan.trip_id(j), _json(plan.completed(j)))


def _json(event: TripRequest | TripCompleted) -> bytes:
    return kafka.encode(event.model_dump(mode="json"))


class ReplayError(RuntimeError):
    """Kafka is unreachable, a topic is missing, or messages were not delivered."""


@dataclass(frozen=True)
class ReplaySummary:
    requests: int  # valid requests sent, one per trip id
    completions: int
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
           echo: Callable[[str], None] = print) -> ReplaySummary:
    """Send ``count`` trips of a generated ``day`` as requests and completions, paced as ``schedule`` says."""
    messages = schedule(plan_day(day, count, seed, shift), rate, time_scale, malformed_share)
    k = settings.kafka
    topics: dict[Kind, str] = {"request": k.trip_requests_topic, "malformed": k.trip_requests_topic,
                               "completed": k.trip_completed_topic}
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
                 f"{sent['completed']:,} completions")
            next_progress = now + PROGRESS_EVERY_S

    for message in messages:
        due = start + message.offset_s
        while (now := time.monotonic()) < due:
            time.sleep(min(due - now, MAX_SLEEP_S))
            check(time.monotonic())
        _produce(producer, topics[message.kind], message, deliveries)
        now = time.monotonic()
        if message.kind != "completed":
            first_request_at = now if first_request_at is None else first_request_at
            last_request_at = now
        sent[message.kind] += 1
        check(now)

    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if remaining or deliveries.failed:
        raise ReplayError(f"{remaining + deliveries.failed} message(s) not delivered to {k.bootstrap}"
                          + (f": {deliveries.first_error}" if deliveries.first_error else ""))
    n_requests = sent["request"] + sent["malformed"]
    span = last_request_at - (first_request_at or 0.0)
    return ReplaySummary(requests=sent["request"], completions=sent["completed"], malformed=sent["malformed"],
                         elapsed_s=time.monotonic() - start,
                         achieved_rate=(n_requests - 1) / span if n_requests > 1 and span > 0 else 0.0)


def _produce(producer: Any, topic: str, message: Message, on_delivery: _Deliveries) -> None:
    while True:
        try:
            producer.produce(topic, key=message.key.encode(), value=message.value, on_delivery=on_delivery)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)

