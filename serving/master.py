"""The master log of events, read back: what the batch views are recomputed from.

The lake sink (``speed.lake_sink``) keeps every record of every event topic as Kafka held it, under
``<master_events>/topic=<topic>/date=<yyyy-mm-dd>/`` by the record's Kafka timestamp (its arrival, UTC). This
module reads a workload's predictions and outcomes back from there, with Spark:

- **through the file sink's log**: the root path is read, never a partition folder, so a file a killed batch left
  behind is not read and each Kafka record counts once;
- **parsed as the serving sync parses them** (``serving.sync.parse_prediction``, ``parse_outcome``), in Spark's
  Python workers: one definition of a valid prediction and outcome for MySQL and Hive alike; a malformed record is
  left out, as the sync leaves it out;
- **the last delivery of a key wins**, as in MySQL: the latest Kafka timestamp, then the highest offset.

The views of event day D need the predictions of requests made on D. A prediction arrives after its request (a
replay of old days arrives long after), so they are in the partitions of arrival dates from D on; one day before
D is read too, for clocks that run ahead (``CLOCK_SKEW``). A daily run for yesterday reads two or three days of
arrivals; a rebuild of old days reads everything that arrived since.

``wait_until_caught_up`` waits until the lake holds every record Kafka held when it was called, so that a day is
never recomputed from a log that is still behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import lake
from core.settings import Settings
from core.views import TABLE_ROLES, Column, RealTimeViews
from core.workload import Workload

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

CLOCK_SKEW = dt.timedelta(days=1)
ONE_DAY = dt.timedelta(days=1)
# The master log's columns as the lake sink writes them (``speed.lake_sink.rows``), ``topic`` and ``date`` being
# the partition columns.
MASTER_SCHEMA = ("`partition` INT, `offset` BIGINT, `timestamp` TIMESTAMP, `key` BINARY, `value` BINARY, "
                 "`topic` STRING, `date` DATE")
_SPARK_TYPES = {"VARCHAR": "STRING", "SMALLINT": "SMALLINT", "INT": "INT", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE",
                "DATETIME": "TIMESTAMP_NTZ"}
# Each parsed record keeps where it came from (the master log's columns but key and value), for the last-delivery
# rule and for reconciliation.
SOURCE = ("topic", "partition", "offset", "timestamp", "date")
_SOURCE_DDL = {name: f"`{name}` {typ}" for name, typ in re.findall(r"`(\w+)` (\w+)", MASTER_SCHEMA)}


MASTER_TABLE = "master_events"


class MasterBehind(RuntimeError):
    """The master log does not hold yet every record Kafka holds."""


def spark_type(column: Column) -> str:
    """The Spark SQL type of a view column (its MySQL type, ``core.views``); DATETIME is naive UTC."""
    return _SPARK_TYPES[column.type.split("(")[0]]


def first_arrival(day: dt.date) -> dt.date:
    """The first arrival date whose records can hold events of ``day``."""
    return day - CLOCK_SKEW


# --------------------------------------------------------------------------------------------- reading the log
def events(spark: SparkSession, settings: Settings, topics: Iterable[str],
           arrived_since: dt.date | None = None) -> DataFrame:
    """The master log's records of ``topics`` (arrived on ``arrived_since`` or later), read through the sink's log.
    An empty frame where the log does not exist yet."""
    from pyspark.sql import functions as F

    if lake.is_dir(settings, settings.master_events_uri):
        df = spark.read.schema(MASTER_SCHEMA).parquet(lake.spark_uri(settings.master_events_uri))
    else:  # no sink has written here yet
        log.warning("the master log %s does not exist yet: no events", settings.master_events_uri)
        df = spark.createDataFrame([], MASTER_SCHEMA)
    df = df.where(F.col("topic").isin(list(topics)))
    if arrived_since is not None:
        df = df.where(F.col("date") >= F.lit(arrived_since))
    return df


def register(spark: SparkSession, settings: Settings, table: str = MASTER_TABLE) -> str:
    """The master log as a table of the Hive database, ``<db>.master_events``, for analysts (through the Thrift
    Server): a Spark table over the log's root, which Spark reads through the file sink's log like ``events``
    (every record once, ``topic`` and ``date`` from the folders). Created where missing; returns its name."""
    name = f"{settings.spark.hive_database}.{table}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.spark.hive_database}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({MASTER_SCHEMA}) USING parquet "
              f"LOCATION '{lake.spark_uri(settings.master_events_uri)}'")
    return name


def _parser(kind: str, workload: str, tables: dict[str, str], out_schema: pa.Schema):
    """A ``mapInArrow`` function: each record parsed by the serving sync's rules, with a ``malformed`` reason."""

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from core.contract import Malformed
        from core.workload import load
        from serving.sync import parse_outcome, parse_prediction

        wl = load(workload)
        views = RealTimeViews(wl, tables)
        n_values = len(out_schema) - len(SOURCE) - 1
        for batch in batches:
            source = [batch.column(name).to_pylist() for name in SOURCE]
            rows: list[tuple[Any, ...]] = []
            for i, value in enumerate(batch.column("value").to_pylist()):
                try:
                    values = (parse_prediction(value, wl, views).values if kind == "prediction"
                              else tuple(parse_outcome(value, wl)))
                    reason = None
                except Malformed as exc:
                    values, reason = (None,) * n_values, str(exc)[:500]
                rows.append((*(column[i] for column in source), *values, reason))
            columns = list(zip(*rows)) if rows else [[] for _ in out_schema]
            yield pa.RecordBatch.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, out_schema)],
                                             schema=out_schema)

    return parse


def _latest(df: DataFrame, key: str) -> DataFrame:
    """One row a key: the last delivery (latest Kafka timestamp, then highest offset), as MySQL keeps it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(key).orderBy(F.col("timestamp").desc(), F.col("offset").desc())
    return df.withColumn("_n", F.row_number().over(order)).where(F.col("_n") == 1).drop("_n")


@dataclass
class Parsed:
    """A workload's predictions and outcomes of the master log, parsed: the valid ones, one a key (``predictions``,
    ``outcomes``), and every record's coordinates with its ``malformed`` reason or None (``records``)."""

    predictions: DataFrame
    outcomes: DataFrame
    records: DataFrame


def parsed(spark: SparkSession, settings: Settings, wl: Workload, views: RealTimeViews,
           arrived_since: dt.date | None) -> Parsed:
    """The workload's predictions (the columns of its MySQL predictions table that the sync writes) and outcomes
    (key, outcome time, outcome value) from the master log, the last delivery of each key."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    topics = settings.kafka.for_workload(wl.name)
    frames = {}
    for kind, topic, columns in (
            ("prediction", topics.predictions, views.prediction_columns),
            ("outcome", topics.completed, views.table_columns[views.outcomes])):
        ddl = ", ".join((*(_SOURCE_DDL[name] for name in SOURCE), *(f"`{c.name}` {spark_type(c)}" for c in columns),
                         "`malformed` STRING"))
        schema = spark.createDataFrame([], ddl).schema
        records = events(spark, settings, [topic], arrived_since)
        parse = _parser(kind, wl.name, _tables(views), to_arrow_schema(schema, timezone="UTC"))
        frames[kind] = records.mapInArrow(parse, schema)
    valid = {kind: _latest(df.where(F.col("malformed").isNull()).drop("malformed"), views.key)
             for kind, df in frames.items()}
    source = [*SOURCE, "malformed"]
    return Parsed(valid["prediction"], valid["outcome"],
                  frames["prediction"].select(*source).unionByName(frames["outcome"].select(*source)))


def _tables(views: RealTimeViews) -> dict[str, str]:
    return {role: views.names[role] for role in TABLE_ROLES}


def read(spark: SparkSession, settings: Settings, wl: Workload, views: RealTimeViews, first_day: dt.date, *,
         wait: bool = True) -> Parsed:
    """What the views of event days from ``first_day`` on are computed from: ``parsed`` over the arrivals from the
    day before it, after waiting (``wait``) until the log holds what Kafka holds of the workload's predictions and
    outcomes (``serving.master_wait_s``)."""
    since = first_arrival(first_day)
    if wait:
        topics = settings.kafka.for_workload(wl.name)
        wait_until_caught_up(spark, settings, [topics.predictions, topics.completed], since,
                             settings.serving.master_wait_s)
    return parsed(spark, settings, wl, views, since)


def joined(spark: SparkSession, wl: Workload, views: RealTimeViews, data: Parsed, day: dt.date) -> DataFrame:
    """The predictions of requests made on ``day``, each with its outcome's time and label once it arrived: the
    rows of the workload's Hive predictions table. The query is the one the archive ran on MySQL
    (``sql/serving/archive_predictions_of_day.sql``), run on the master log's rows."""
    names = {"predictions": f"master_{views.predictions}", "outcomes": f"master_{views.outcomes}"}
    data.predictions.createOrReplaceTempView(names["predictions"])
    data.outcomes.createOrReplaceTempView(names["outcomes"])
    sql = RealTimeViews(wl, {**_tables(views), **names}).statement("archive_predictions_of_day",
                              prediction_select=", ".join(f"p.{c.name}" for c in views.prediction_columns))
    return spark.sql(sql.replace(":next_day", f"TIMESTAMP_NTZ'{day + ONE_DAY}'")
                     .replace(":day", f"TIMESTAMP_NTZ'{day}'"))


def outcomes_of(data: Parsed, predictions: DataFrame, views: RealTimeViews) -> DataFrame:
    """The outcomes of ``predictions`` (by key)."""
    return data.outcomes.join(predictions.select(views.key), views.key, "left_semi")


# --------------------------------------------------------------------------------------------- caught up
def _master_ends(spark: SparkSession, settings: Settings, topics: list[str],
                 arrived_since: dt.date) -> dict[tuple[str, int], int]:
    from pyspark.sql import functions as F

    rows = (events(spark, settings, topics, arrived_since).groupBy("topic", "partition")
            .agg(F.max("offset").alias("last")).collect())
    return {(r["topic"], r["partition"]): r["last"] + 1 for r in rows}


def kafka_day_offsets(settings: Settings, topics: Iterable[str], days: Iterable[dt.date]) -> tuple[
        dict[tuple[str, int], tuple[int, int]], dict[tuple[str, int, dt.date], int]]:
    """Kafka now: the (low, high) watermarks of every partition of ``topics``, and per partition and day the offset
    of its first record at or after the day's start (UTC), the high watermark where there is none."""
    from confluent_kafka import TopicPartition

    from core import kafka
    from serving.sync import watermarks

    consumer = kafka.consumer(settings, "lambdaml-master-check")
    try:
        marks = watermarks(consumer, list(topics))
        offsets: dict[tuple[str, int, dt.date], int] = {}
        for day in days:
            ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
            for tp in consumer.offsets_for_times([TopicPartition(t, p, ms) for t, p in marks], timeout=10):
                high = marks[(tp.topic, tp.partition)][1]
                offsets[(tp.topic, tp.partition, day)] = tp.offset if tp.offset >= 0 else high  # -1: none
        return marks, offsets
    finally:
        consumer.close()


def kafka_ends(settings: Settings, topics: list[str], arrived_since: dt.date) -> dict[tuple[str, int], int]:
    """Per partition of ``topics`` that has records arrived on ``arrived_since`` or later: its end offset now."""
    marks, offsets = kafka_day_offsets(settings, topics, [arrived_since])
    return {(t, p): high for (t, p), (_, high) in marks.items() if offsets[(t, p, arrived_since)] < high}


def _behind(spark: SparkSession, settings: Settings, topics: list[str], arrived_since: dt.date,
            wanted: dict[tuple[str, int], int]) -> dict[str, int]:
    held = _master_ends(spark, settings, topics, arrived_since) if wanted else {}
    return {f"{t}[{p}]": end - held.get((t, p), 0) for (t, p), end in sorted(wanted.items())
            if held.get((t, p), 0) < end}


def wait_until_caught_up(spark: SparkSession, settings: Settings, topics: list[str], arrived_since: dt.date,
                         timeout_s: float, poll_s: float = 5.0) -> None:
    """Wait until the master log holds every record that ``topics`` held when this was called; ``MasterBehind``
    after ``timeout_s``."""
    wanted = kafka_ends(settings, topics, arrived_since)
    deadline = time.monotonic() + timeout_s
    while True:
        behind = _behind(spark, settings, topics, arrived_since, wanted)
        if not behind:
            return
        if time.monotonic() > deadline:
            raise MasterBehind(
                f"the master log {settings.master_events_uri} is behind Kafka after {timeout_s:.0f}s: records not "
                f"in the lake yet by partition {behind}. Is the lake sink running (`lambdaml speed status`)?")
        log.info("waiting for the lake sink: records not in the master log yet %s", behind)
        time.sleep(poll_s)
