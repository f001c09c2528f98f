"""Serving layer: sync one workload's predictions and outcomes (and the metrics) from Kafka into MySQL.

Each workload's ``serving_sync`` DAG (``<workload>_serving_sync`` but for taxi) runs it every five minutes; run it
by hand with ``python -m serving.sync --workload bike``. Its tables are the workload's real-time views
(``core.views``, derived from its request contract): for taxi ``predictions_recent``, ``trip_outcomes`` and
``zone_hour_stats``, for bike ``bike_predictions``, ``bike_outcomes`` and ``bike_hourly``. The default workload's
run syncs the shared ``metrics`` topic into ``serving_metrics`` too.

One run reads the workload's predictions and outcomes topics from the offsets stored in ``sync_offsets`` for its
consumer name (each partition's beginning when none is stored) up to the high watermarks taken when it starts, so a
run is bounded. It works in chunks of messages, and each chunk is one MySQL transaction that

1. upserts the predictions (the last delivery of a key wins: a key's messages share a partition, so every replay
   delivers them in the same order), the outcomes and the metrics with multi-row
   ``INSERT ... ON DUPLICATE KEY UPDATE``;
2. writes the actual label onto the chunk's predictions whose outcome has arrived;
3. recomputes the hourly view from the predictions for every (group, hour) the chunk touched;
4. stores the next offsets.

The rows are keyed by the request key (metrics by source, name and ts), the view is recomputed rather than
incremented, and the offsets commit with the rows: a redelivered message, a retried task or a run killed half-way
never counts anything twice, and re-running changes nothing. A malformed message is counted, logged with its offset
and skipped; it never stops the sync.

Why a Kafka consumer and not Spark: a run moves at most some hundred thousand small JSON messages
(five minutes of live traffic), and its cost is the MySQL write, not reading or parsing. Measured on
the platform's 2-core machine, the consumer connects, takes the watermarks and reads in 0.6 s; a
Spark session with the Kafka connector takes 22 s to start and 12 s more for its first batch read of
the same topics, and holds a 2 GB JVM, for a job that otherwise finishes in seconds. Spark would not
help the write either: the offsets must live in MySQL and commit in the same transaction as the
rows, so the same multi-row upsert would run from its driver or executors. Should one run ever have
to move tens of millions of messages, Spark's batch Kafka source with explicit
``startingOffsets``/``endingOffsets`` taken from ``sync_offsets`` can feed the same writer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import typer

from core.contract import (
    Malformed,
    check_recorded,
    check_recorded_outcome,
    recorded_number,
    recorded_text,
    recorded_timestamp,
)
from core.db import engine, load_sql
from core.events import SCHEMA_VERSION
from core.settings import Settings, get_settings
from core.views import RealTimeViews
from core.views import of as views_of
from core.workload import DEFAULT, Workload, load

if TYPE_CHECKING:
    from confluent_kafka import Consumer
    from pymysql.cursors import Cursor

log = logging.getLogger(__name__)

CONSUMER = "serving_sync"  # the default workload's consumer name; another's is <workload>_serving_sync
CHUNK_MESSAGES = 20_000
# PyMySQL's executemany packs rows into one multi-row INSERT up to this many bytes (default 1 MB);
# fewer, larger statements are faster and stay well under max_allowed_packet (16 MB by default).
MAX_STATEMENT_BYTES = 4_000_000
POLL_S = 0.5
IDLE_TIMEOUT_S = 60.0
MALFORMED_LOGGED_PER_CHUNK = 5
# Predictions beyond this are nonsense; the bound keeps the view's sums far from DOUBLE overflow,
# which would fail the chunk's transaction on every retry.
MAX_PREDICTION = 1e9

Kind = Literal["prediction", "outcome", "metric"]


# ---------------------------------------------------------------------------------------------------------------------
# Pure: messages to rows.

class Record(NamedTuple):
    """One Kafka message, as the sync needs it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


class PredictionRow(NamedTuple):
    """A row of a workload's predictions table: ``values`` in the column order the upsert writes
    (``RealTimeViews.prediction_columns``), with its key and its (group, hour) key of the hourly view."""

    key: str
    hour_key: tuple[Any, dt.datetime]
    values: tuple[Any, ...]


class OutcomeRow(NamedTuple):
    """A row of a workload's outcomes table: the request key, when the outcome became known, the observed value."""

    key: str
    time: dt.datetime
    value: float


class MetricRow(NamedTuple):
    """A row of ``serving_metrics``."""

    source: str
    name: str
    ts: dt.datetime
    value: float
    tags_json: str | None


def _object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise Malformed("empty message")
    try:
        obj = json.loads(value)
    except ValueError as exc:  # bad JSON, bad UTF-8, a number of over 4,300 digits
        raise Malformed(f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:  # nested deeper than the interpreter's stack: one message must not stop the sync
        raise Malformed("not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise Malformed(f"schema_version: unsupported {version!r}")
    return obj


_text = recorded_text


_number = recorded_number
parse_timestamp = recorded_timestamp


def parse_prediction(value: bytes | None, wl: Workload, views: RealTimeViews) -> PredictionRow:
    """A prediction event as a row: the request's stored fields checked as the workload's contract declares them
    for recorded events (``core.contract.check_recorded``), then the prediction's own."""
    obj = _object(value)
    request = check_recorded(wl.request, obj)
    columns = list(request.values())
    model_version = _text(obj, "model_version", 128)
    predicted = _number(obj, wl.prediction_field, -MAX_PREDICTION, MAX_PREDICTION)
    scored = parse_timestamp(obj.get("scored_ts"), "scored_ts")
    event = parse_timestamp(obj.get("event_ts"), "event_ts")
    return prediction_row((columns[0], model_version, *columns[1:], predicted, scored, event), views)


def prediction_row(values: Sequence[Any], views: RealTimeViews) -> PredictionRow:
    """A row of the predictions table from its values in ``RealTimeViews.prediction_columns`` order."""
    names = [c.name for c in views.prediction_columns]
    hour = values[names.index(views.time)].replace(minute=0, second=0, microsecond=0)
    return PredictionRow(values[0], (values[names.index(views.group)], hour), tuple(values))


def parse_outcome(value: bytes | None, wl: Workload) -> OutcomeRow:
    """An outcome event as a row, checked as the workload declares its outcome (``core.contract.Outcome``)."""
    return OutcomeRow(*check_recorded_outcome(wl.request, wl.outcome, _object(value)))


def parse_metric(value: bytes | None) -> MetricRow:
    obj = _object(value)
    tags = obj.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise Malformed("tags: expected an object")
    return MetricRow(
        source=_text(obj, "source", 64),
        name=_text(obj, "name", 128),
        ts=parse_timestamp(obj.get("ts"), "ts"),
        value=_number(obj, "value", -math.inf, math.inf),
        tags_json=json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags else None,
    )


class Rejected(NamedTuple):
    topic: str
    partition: int
    offset: int
    reason: str


@dataclass
class ChunkRows:
    """The rows of one chunk of a workload's messages, last delivery per key, and the offsets to store with them."""

    workload: Workload
    views: RealTimeViews
    predictions: dict[str, PredictionRow] = field(default_factory=dict)
    outcomes: dict[str, OutcomeRow] = field(default_factory=dict)
    metrics: dict[tuple[str, str, dt.datetime], MetricRow] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, record: Record, kind: Kind) -> None:
        self.messages[record.topic] += 1
        key = (record.topic, record.partition)
        self.next_offsets[key] = max(self.next_offsets.get(key, 0), record.offset + 1)
        try:
            if kind == "prediction":
                p = parse_prediction(record.value, self.workload, self.views)
                self.predictions[p.key] = p
            elif kind == "outcome":
                o = parse_outcome(record.value, self.workload)
                self.outcomes[o.key] = o
            else:
                m = parse_metric(record.value)
                self.metrics[(m.source, m.name, m.ts)] = m
        except Malformed as exc:
            self.rejected.append(Rejected(record.topic, record.partition, record.offset, str(exc)))

    def keys(self) -> list[str]:
        """Keys whose (group, hour) figures may change: predicted or completed in this chunk."""
        return sorted(self.predictions.keys() | self.outcomes.keys())

    def hour_keys(self) -> list[tuple[Any, dt.datetime]]:
        """The (group, hour) keys of this chunk's predictions."""
        return sorted({p.hour_key for p in self.predictions.values()})


def chunk_rows(records: Iterable[Record], kinds: Mapping[str, Kind], wl: Workload,
               views: RealTimeViews | None = None) -> ChunkRows:
    """Turn a chunk of messages into rows; malformed messages are recorded in ``rejected``, never raised."""
    rows = ChunkRows(wl, views or RealTimeViews(wl))
    for record in records:
        rows.add(record, kinds[record.topic])
    return rows


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition that this run syncs."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def plan_ranges(stored: Mapping[tuple[str, int], int],
                watermarks: Mapping[tuple[str, int], tuple[int, int]]) -> list[PartitionRange]:
    """Where each partition starts (its stored next offset, else its beginning) and ends (its high watermark)."""
    ranges = []
    for (topic, partition), (low, high) in sorted(watermarks.items()):
        start = stored.get((topic, partition), low)
        if start < low:
            log.warning("%s[%d]: offsets %d..%d were deleted by retention before they were synced",
                        topic, partition, start, low - 1)
            start = low
        elif start > high:
            log.warning("%s[%d]: stored offset %d is past the end %d (topic recreated?); starting from %d",
                        topic, partition, start, high, low)
            start = low
        ranges.append(PartitionRange(topic, partition, start, high))
    return ranges


def topic_kinds(settings: Settings, workload: str = DEFAULT, metrics: bool | None = None) -> dict[str, Kind]:
    """The topics one run syncs: the workload's predictions and outcomes, and the shared metrics topic when
    ``metrics`` (by default in the default workload's run only)."""
    topics = settings.kafka.for_workload(workload)
    kinds: dict[str, Kind] = {topics.predictions: "prediction", topics.completed: "outcome"}
    if metrics if metrics is not None else workload == DEFAULT:
        kinds[settings.kafka.metrics_topic] = "metric"
    return kinds


# ---------------------------------------------------------------------------------------------------------------------
# I/O: Kafka in, MySQL out.

def _datetime_literal(value: dt.datetime, mapping: Any = None) -> str:
    # PyMySQL's own datetime escaping costs ~6 us a value, half the client time of a prediction row.
    return "'" + value.isoformat(" ", "milliseconds") + "'"


def bulk_upsert(cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]],
                max_statement_bytes: int = MAX_STATEMENT_BYTES) -> int:
    """Write ``rows`` with PyMySQL's executemany, which packs them into multi-row ``INSERT ... VALUES`` statements.

    ``sql`` must be a single-row ``INSERT ... VALUES (%s, ...) [ON DUPLICATE KEY UPDATE ...]``. Datetimes are
    naive UTC and written to the millisecond, the precision of the DATETIME(3) columns.
    """
    if not rows:
        return 0
    cursor.connection.encoders[dt.datetime] = _datetime_literal
    cursor.max_stmt_length = max_statement_bytes
    cursor.executemany(sql, rows)
    return len(rows)


def read_offsets(cursor: Cursor, consumer_name: str) -> dict[tuple[str, int], int]:
    cursor.execute(load_sql("serving/sync_read_offsets"), (consumer_name,))
    return {(topic, part): next_offset for topic, part, next_offset in cursor.fetchall()}


def write_chunk(cursor: Cursor, rows: ChunkRows, consumer_name: str) -> int:
    """Everything one chunk changes, in one transaction that the caller commits. Returns the (group, hour) keys
    of the hourly view recomputed."""
    views = rows.views
    cursor.execute(load_sql("serving/sync_hour_keys_clear"))
    touched = 0
    keys = rows.keys()
    if keys:  # before the upserts: the hours these keys were in until now
        touched += cursor.execute(views.statement("sync_hour_keys_of_keys"), (keys,))
    bulk_upsert(cursor, views.statement("sync_upsert_predictions"), [p.values for p in rows.predictions.values()])
    bulk_upsert(cursor, views.statement("sync_upsert_outcomes"), list(rows.outcomes.values()))
    bulk_upsert(cursor, load_sql("serving/sync_upsert_metrics"), list(rows.metrics.values()))
    if keys:
        cursor.execute(views.statement("sync_fill_actuals"), (keys,))
    if bulk_upsert(cursor, views.statement("sync_hour_keys_add"), rows.hour_keys()):
        touched += cursor.rowcount  # INSERT IGNORE: the keys not captured above
    if touched:
        cursor.execute(views.statement("sync_recompute_hourly"))
        cursor.execute(views.statement("sync_delete_empty_hours"))
    bulk_upsert(cursor, load_sql("serving/sync_upsert_offsets"),
                [(consumer_name, topic, part, offset) for (topic, part), offset in sorted(rows.next_offsets.items())])
    return touched


def watermarks(consumer: Consumer, topics: Iterable[str],
               timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) offsets of every partition of ``topics``, now. A topic that does not exist has none."""
    from confluent_kafka import TopicPartition

    marks = {}
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            log.warning("%s: %s; nothing to sync from it", topic, meta.error.str())
            continue
        for partition in meta.partitions:
            marks[(topic, partition)] = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False)
    return marks


def read_chunks(consumer: Consumer, ranges: Sequence[PartitionRange], chunk_messages: int,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> Iterator[tuple[list[Record], dict[tuple[str, int], int]]]:
    """Messages of ``ranges``, ``chunk_messages`` at a time, each chunk with the partitions it finished.

    A partition is finished at its end offset, also when the last offsets hold no message (transaction markers).
    """
    from confluent_kafka import KafkaException, TopicPartition

    pending = {(r.topic, r.partition): r.end for r in ranges if r.size}
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in ranges if r.size])
    records: list[Record] = []
    finished: dict[tuple[str, int], int] = {}

    def finish(key: tuple[str, int]) -> None:
        finished[key] = pending.pop(key)
        consumer.pause([TopicPartition(*key)])

    last_progress = time.monotonic()
    while pending:
        batch = consumer.consume(num_messages=max(1, chunk_messages - len(records)), timeout=POLL_S)
        for message in batch:
            if message.error():
                raise KafkaException(message.error())
            key = (message.topic(), message.partition())
            end = pending.get(key)
            if end is None or message.offset() >= end:
                continue  # past this run's end: the next run takes it
            records.append(Record(key[0], key[1], message.offset(), message.value()))
            if message.offset() + 1 >= end:
                finish(key)
        if batch:
            last_progress = time.monotonic()
        else:
            for tp in consumer.position([TopicPartition(*key) for key in pending]):
                if tp.offset >= pending[(tp.topic, tp.partition)]:
                    finish((tp.topic, tp.partition))
            if pending and time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"no message for {idle_timeout_s:.0f}s before the end of "
                                   f"{sorted(pending.items())} (topic, partition): end offset")
        if len(records) >= chunk_messages or (not pending and (records or finished)):
            yield records, finished
            records, finished = [], {}


@dataclass
class SyncSummary:
    """What one run did.

    ``rows``: rows upserted per base table (the last delivery per key of each chunk), and for the hourly view
    (``hourly`` names it) the (group, hour) keys recomputed, summed over chunks. ``rows_per_s``: base-table
    rows over the run's wall seconds, start-up included.
    """

    consumer: str
    workload: str = DEFAULT
    hourly: str = ""
    messages: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    ranges: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0

    @classmethod
    def of(cls, consumer: str, views: RealTimeViews) -> SyncSummary:
        return cls(consumer, views.workload, views.hourly, rows=dict.fromkeys(
            (views.predictions, views.outcomes, "serving_metrics", views.hourly), 0))

    def add(self, rows: ChunkRows, hour_keys: int) -> None:
        self.chunks += 1
        for topic, n in rows.messages.items():
            self.messages[topic] = self.messages.get(topic, 0) + n
        for rejected in rows.rejected:
            self.malformed[rejected.topic] = self.malformed.get(rejected.topic, 0) + 1
        for table, n in ((rows.views.predictions, len(rows.predictions)), (rows.views.outcomes, len(rows.outcomes)),
                         ("serving_metrics", len(rows.metrics)), (rows.views.hourly, hour_keys)):
            self.rows[table] += n

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ensure_tables(cursor: Cursor, views: RealTimeViews) -> None:
    """Create the workload's tables where they are missing (a new workload needs no migration)."""
    for statement in views.ddl():
        cursor.execute(statement)


def run(settings: Settings, *, workload: str = DEFAULT, consumer_name: str | None = None,
        metrics: bool | None = None, chunk_messages: int = CHUNK_MESSAGES,
        before_commit: Callable[[int, ChunkRows], None] | None = None) -> SyncSummary:
    """Sync one workload's topics into MySQL from the stored offsets up to the ends taken now.

    ``consumer_name`` defaults to the workload's (``serving_sync``, ``bike_serving_sync``); ``metrics`` (the shared
    metrics topic) to the default workload's run only. ``before_commit(chunk_number, rows)`` runs inside each
    chunk's transaction, just before the commit; if it raises, that chunk rolls back and the run fails with the
    chunks before it committed.
    """
    from core import kafka

    t0 = time.perf_counter()
    wl = load(workload)
    views = views_of(wl, settings)
    consumer_name = consumer_name or wl.dag_id(CONSUMER)
    kinds = topic_kinds(settings, wl.name, metrics)
    summary = SyncSummary.of(consumer_name, views)
    eng = engine(settings)
    conn = eng.raw_connection()
    consumer = kafka.consumer(settings, consumer_name)
    try:
        with conn.cursor() as cursor:
            ensure_tables(cursor, views)
            cursor.execute(load_sql("serving/sync_hour_keys_drop"))
            cursor.execute(views.statement("sync_hour_keys_create"))
            ranges = plan_ranges(read_offsets(cursor, consumer_name), watermarks(consumer, kinds))
            conn.commit()
            summary.ranges = [dataclasses.asdict(r) for r in ranges]
            total = sum(r.size for r in ranges)
            log.info("%s: %d messages to sync from %d partitions", consumer_name, total, len(ranges))
            done = 0
            for records, finished in read_chunks(consumer, ranges, chunk_messages):
                t_chunk = time.perf_counter()
                rows = chunk_rows(records, kinds, wl, views)
                rows.next_offsets.update(finished)
                try:
                    hour_keys = write_chunk(cursor, rows, consumer_name)
                    if before_commit is not None:
                        before_commit(summary.chunks + 1, rows)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                summary.add(rows, hour_keys)
                done += len(records)
                for r in rows.rejected[:MALFORMED_LOGGED_PER_CHUNK]:
                    log.warning("malformed %s[%d]@%d: %s", r.topic, r.partition, r.offset, r.reason)
                log.info("chunk %d: %d messages (%d malformed) -> %d predictions, %d outcomes, %d metrics, "
                         "%d hourly keys in %.2fs; %d/%d messages", summary.chunks, len(records),
                         len(rows.rejected), len(rows.predictions), len(rows.outcomes), len(rows.metrics), hour_keys,
                         time.perf_counter() - t_chunk, done, total)
    finally:
        consumer.close()
        conn.close()
        eng.dispose()
    summary.seconds = round(time.perf_counter() - t0, 3)
    written = sum(n for table, n in summary.rows.items() if table != views.hourly)
    summary.rows_per_s = round(written / summary.seconds, 1) if summary.seconds else 0.0
    log.info("%s: %s", consumer_name, json.dumps(summary.as_dict()))
    return summary


app = typer.Typer(add_completion=False)


@app.command()
def main(
    workload: Annotated[str, typer.Option(help="The workload whose predictions and outcomes to sync (a folder "
                                               "under workloads/).")] = DEFAULT,
    consumer: Annotated[str | None, typer.Option(
        help="Consumer name: the key of the offsets in MySQL table sync_offsets. Default: serving_sync for the "
             "default workload, <workload>_serving_sync for another.")] = None,
    chunk_messages: Annotated[int, typer.Option(min=1, max=200_000, help="Messages per MySQL transaction.")]
    = CHUNK_MESSAGES,
) -> None:
    """Sync a workload's predictions and outcomes (and, for the default workload, the metrics topic) from Kafka into
    its MySQL real-time views once, up to the topics' current ends."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = run(get_settings(), workload=workload, consumer_name=consumer, chunk_messages=chunk_messages)
    typer.echo(json.dumps(summary.as_dict(), indent=2))


if __name__ == "__main__":
    app()
