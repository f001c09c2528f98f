"""Hive batch views: one day of a workload recomputed from master data, then the batch coverage, then MySQL retention.

For day D of a workload, through Spark and the shared metastore, partition ``<partition column>=D`` (taxi's
``pickup_date``) of five tables of the Hive database (``lake``) is overwritten. Their DDL is derived: the lake
tables' from the workload's raw schema, the others' from its real-time views (``core.views``), with the template
``sql/hive/partitioned_table.sql``. For taxi (``hive_tables``) they keep the names they had before workloads:

- ``trips`` from the lake's ``validated/trips`` partition of D and ``quarantine`` from its
  ``quarantine/trips`` partition, each when the lake has it (a lake cleaned up after archiving
  never empties Hive); bike's are ``bike_validated`` and ``bike_quarantine``;
- ``predictions``: the predictions of requests made on D, from the master log of events (``serving.master``: the
  predictions and outcomes topics as the lake sink keeps them), each with its label once its outcome arrived
  (bike: ``bike_predictions``);
- ``zone_hour_stats``: the hourly view of D, computed from those predictions with the definition of MySQL's
  real-time view (bike: ``bike_hourly``);
- ``model_error``: per model version, the day's predictions, completed ones and their summed loss, so a bad
  version shows in the batch views under its own name (bike: ``bike_model_error``).

Nothing here reads MySQL to build Hive: a sync bug or a hand edit in MySQL never becomes history, and any day can
be recomputed (``serving.rebuild``). Before it reads the log, the archive waits until the lake sink has written
every record Kafka holds of the workload's topics (``serving.master_wait_s``).

Verify: Hive's rows of D equal the rows computed from the master log.

Coverage (``batch_coverage.covered_until`` of a view: Hive holds every day before it, the
merge query reads MySQL from it on). A verified day is recorded in ``archive_days``; coverage
then moves over consecutive recorded days only, so it never jumps a day that was not archived.
An empty day is a day like any other: recorded once archived (its partitions emptied), it
moves coverage only when coverage has reached it. A day after a gap is recorded and waits
until the gap is archived. With no coverage row yet, coverage starts at the first day MySQL
holds predictions of (nothing before it needs Hive); with no predictions at all, no row is made.

Retention deletes a day's rows from the workload's predictions, outcomes (of its predictions)
and hourly view only when the day is recorded as archived, before ``covered_until``,
older than ``serving.retention_days``, and MySQL holds exactly the rows the batch view holds (checked
under lock in the deleting transaction): rows the batch view does not hold yet are never deleted, and such a day is
reported stale until it is archived again (or rebuilt, when MySQL is the wrong one).
"""


from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.settings import Settings, get_settings
from core.views import RealTimeViews
from core.views import of as views_of
from core.workload import DEFAULT, Workload, load
from serving import master

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType
    from sqlalchemy.engine import Connection, Engine, Row

log = logging.getLogger(__name__)

COVERAGE_VIEW = "zone_hour_stats"  # the default workload's; another's is its hourly view (``RealTimeViews.hourly``)
ONE_DAY = dt.timedelta(days=1)
REASON_COL = "failed_rule"  # the quarantine's extra column (batch.validate)
RECORD_DAY = """
INSERT INTO archive_days (view_name, day, predictions, completed) VALUES (:view, :day, :predictions, :completed)
ON DUPLICATE KEY UPDATE predictions = VALUES(predictions), completed = VALUES(completed),
                        archived_at = CURRENT_TIMESTAMP(3)
"""
SET_COVERAGE = """
INSERT INTO batch_coverage (view_name, covered_until) VALUES (:view, :covered_until)
ON DUPLICATE KEY UPDATE covered_until = VALUES(covered_until)
"""
RETENTION_CANDIDATES = """
SELECT a.day, a.predictions, a.completed
FROM archive_days a JOIN batch_coverage c ON c.view_name = a.view_name
WHERE a.view_name = :view AND a.purged_at IS NULL AND a.day < c.covered_until AND a.day < :cutoff
ORDER BY a.day
"""
PURGE_DAY = ("archive_purge_outcomes", "archive_purge_predictions", "archive_purge_hourly")
MARK_PURGED = "UPDATE archive_days SET purged_at = CURRENT_TIMESTAMP(3) WHERE view_name = :view AND day = :day"


# --------------------------------------------------------------------------- the workload's Hive tables (pure)
_ARROW_TO_HIVE = ((pa.types.is_int8, "INT"), (pa.types.is_int16, "INT"), (pa.types.is_int32, "INT"),
                  (pa.types.is_int64, "BIGINT"), (pa.types.is_floating, "DOUBLE"), (pa.types.is_string, "STRING"),
                  (pa.types.is_large_string, "STRING"), (pa.types.is_boolean, "BOOLEAN"),
                  (pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_date, "DATE"))


def hive_type(typ: pa.DataType | str) -> str:
    """The Hive type of a raw column (a pyarrow type) or of a view column (its MySQL type, ``core.views``)."""
    if isinstance(typ, str):
        base = typ.split("(")[0]
        return {"VARCHAR": "STRING", "SMALLINT": "INT", "INT": "INT", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE",
                "DATETIME": "TIMESTAMP"}[base]
    for test, name in _ARROW_TO_HIVE:
        if test(typ):
            return name
    raise TypeError(f"no Hive type for the raw column type {typ}")


@dataclass(frozen=True)
class HiveTables:
    """A workload's four Hive tables (without the database), their partition column and their columns."""

    validated: str
    quarantine: str
    predictions: str
    hourly: str
    model_error: str
    partition: str
    columns: dict[str, tuple[tuple[str, str], ...]]

    @property
    def lake(self) -> dict[str, str]:
        """The tables copied from the lake, each with its stage (``validated``, ``quarantine``)."""
        return {self.validated: "validated", self.quarantine: "quarantine"}

    def ddl(self, db: str) -> list[str]:
        from core.db import load_sql

        return [load_sql("hive/partitioned_table").format(
            table=f"{db}.{table}", partition=self.partition,
            columns=",\n  ".join(f"{name} {typ}" for name, typ in columns)) for table, columns in self.columns.items()]


def hive_tables(wl: Workload, views: RealTimeViews | None = None) -> HiveTables:
    """The workload's Hive tables: taxi's keep their names (``trips``, ``quarantine``, ``predictions``,
    ``zone_hour_stats``, ``model_error``); another's are ``<workload>_validated``, ``<workload>_quarantine``, its
    real-time views' names and ``<workload>_model_error``. Columns: the raw schema (the quarantine with
    ``failed_rule``); the predictions' columns of MySQL, the outcome's time and the label; the hourly view's columns;
    per model version the predictions, completed ones and their summed loss."""
    v = views or RealTimeViews(wl)
    if wl.name == DEFAULT:
        names = ("trips", "quarantine", "predictions", v.hourly, "model_error")
    else:
        names = (f"{wl.name}_validated", f"{wl.name}_quarantine", v.predictions, v.hourly, f"{wl.name}_model_error")
    raw = tuple((f.name, hive_type(f.type)) for f in wl.schema)
    predictions = tuple((c.name, hive_type(c.type)) for c in v.prediction_columns) + (
        (v.outcome_time, "TIMESTAMP"), (v.actual, "DOUBLE"))
    counts = {v.count, v.completed}
    hourly = tuple((c.name, "BIGINT" if c.name in counts else hive_type(c.type))
                   for c in v.table_columns[v.hourly])
    model_error = (("model_version", "STRING"), (v.count, "BIGINT"), (v.completed, "BIGINT"), (v.sum_loss, "DOUBLE"))
    columns = dict(zip(names, (raw, raw + ((REASON_COL, "STRING"),), predictions, hourly, model_error), strict=True))
    return HiveTables(*names, partition=wl.partition_column, columns=columns)


class ArchiveMismatch(RuntimeError):
    """Hive's rows of the day differ from the source's."""


@dataclass(frozen=True)
class DayCounts:
    predictions: int
    completed: int


@dataclass(frozen=True)
class Archived:
    day: dt.date
    view: str
    rows: dict[str, int | None]  # Hive rows of the day per table; None: left as it was
    covered_until: dt.date | None


@dataclass(frozen=True)
class Retention:
    view: str
    cutoff: dt.date
    purged: tuple[dt.date, ...]
    stale: tuple[dt.date, ...]


def as_json(result: Archived | Retention) -> dict[str, Any]:
    """A result as JSON-able values (dates as ISO strings), e.g. for an XCom."""
    def plain(value: Any) -> Any:
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(result).items()}


# --------------------------------------------------------------------------- pure transforms
def advance(covered_until: dt.date, archived: Iterable[dt.date]) -> dt.date:
    """``covered_until`` moved over consecutive archived days; it stops at the first day not archived."""
    done = set(archived)
    while covered_until in done:
        covered_until += ONE_DAY
    return covered_until


def retention_cutoff(today: dt.date, retention_days: int) -> dt.date:
    """Days before this one are older than the retention window."""
    return today - dt.timedelta(days=retention_days)


def hourly_view(predictions: DataFrame, views: RealTimeViews) -> DataFrame:
    """Per group and hour of the event time: predictions, sum of predicted, completed, sum of the label and of the
    loss over the completed ones (the task's loss, ``core.task.Task.loss_sql``, which Spark SQL reads as MySQL
    does): the definition of MySQL's real-time hourly view (taxi's ``zone_hour_stats``)."""
    from pyspark.sql import functions as F

    v = views
    predicted, actual = F.col(v.prediction), F.col(v.actual)
    return predictions.alias("p").groupBy(v.group, F.date_trunc("hour", v.time).alias("hour_start")).agg(
        F.count(F.lit(1)).alias(v.count),
        F.sum(predicted).alias(v.sum_predicted),
        F.count(actual).alias(v.completed),
        F.coalesce(F.sum(actual), F.lit(0.0)).alias(v.sum_actual),
        F.coalesce(F.sum(F.expr(v.loss_sql)), F.lit(0.0)).alias(v.sum_loss),
    )


def model_error_view(predictions: DataFrame, views: RealTimeViews) -> DataFrame:
    """Per model version: predictions, completed ones and the sum of their loss (the live error of a version is
    ``sum_loss / completed``)."""
    from pyspark.sql import functions as F

    return predictions.alias("p").groupBy("model_version").agg(
        F.count(F.lit(1)).alias(views.count),
        F.count(F.col(views.actual)).alias(views.completed),
        F.coalesce(F.sum(F.expr(views.loss_sql)), F.lit(0.0)).alias(views.sum_loss),
    )


def aligned(df: DataFrame, schema: StructType, day: dt.date, partition: str) -> DataFrame:
    """``df`` as rows of a table with ``schema``: its columns by name and type, then the partition of ``day``."""
    from pyspark.sql import functions as F

    columns = [F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields if f.name != partition]
    return df.select(*columns, F.lit(day).alias(partition))


# --------------------------------------------------------------------------- Hive (Spark)
def create_tables(spark: SparkSession, db: str, workload: str = DEFAULT,
                  views: RealTimeViews | None = None) -> HiveTables:
    """The workload's Hive tables, created where missing."""
    tables = hive_tables(load(workload), views)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    for statement in tables.ddl(db):
        spark.sql(statement)
    return tables


def _overwrite_partition(spark: SparkSession, table: str, df: DataFrame, day: dt.date, partition: str) -> None:
    """Make partition ``day`` of ``table`` hold exactly ``df``'s rows (none: the partition is dropped)."""
    if df.isEmpty():
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({partition} = '{day.isoformat()}')")
        return
    aligned(df, spark.table(table).schema, day, partition).write.insertInto(table, overwrite=True)


def _partition(spark: SparkSession, table: str, day: dt.date, partition: str) -> DataFrame:
    from pyspark.sql import functions as F

    return spark.table(table).where(F.col(partition) == F.lit(day))


def _archive_lake_partition(spark: SparkSession, settings: Settings, table: str, uri: str,
                            day: dt.date, partition: str) -> int | None:
    """Copy one lake partition into the table's partition of ``day``; None when the lake has none."""
    from core import lake

    if not lake.is_dir(settings, uri):
        return None
    source = spark.read.parquet(uri)
    expected = source.count()
    _overwrite_partition(spark, table, source, day, partition)
    written = _partition(spark, table, day, partition).count()
    if written != expected:
        raise ArchiveMismatch(f"{table} {day}: {written} rows in Hive, {expected} in {uri}")
    return written


def _archive_predictions(spark: SparkSession, db: str, day: dt.date, tables: HiveTables, views: RealTimeViews,
                         source: DataFrame) -> tuple[DayCounts, int]:
    """The day's predictions (``source``, from the master log) and their batch views into Hive; (counts of the
    archived predictions, hourly view rows)."""
    from pyspark.sql import functions as F

    part = tables.partition
    source = source.cache()
    try:
        expected = source.agg(F.count(F.lit(1)).alias("n"), F.count(views.actual).alias("completed")).first()
        _overwrite_partition(spark, f"{db}.{tables.predictions}", source, day, part)
    finally:
        source.unpersist()
    archived = _partition(spark, f"{db}.{tables.predictions}", day, part)
    _overwrite_partition(spark, f"{db}.{tables.hourly}", hourly_view(archived, views), day, part)
    _overwrite_partition(spark, f"{db}.{tables.model_error}", model_error_view(archived, views), day, part)

    counts = archived.agg(F.count(F.lit(1)).alias("n"), F.count(views.actual).alias("completed")).first()
    if (counts["n"], counts["completed"]) != (expected["n"], expected["completed"]):
        raise ArchiveMismatch(f"{tables.predictions} {day}: Hive holds {counts['n']} / {counts['completed']} "
                              f"completed, the master log {expected['n']} / {expected['completed']}")
    for table in (tables.hourly, tables.model_error):
        view = _partition(spark, f"{db}.{table}", day, part).agg(
            F.count(F.lit(1)).alias("rows"), F.coalesce(F.sum(views.count), F.lit(0)).alias("n"),
            F.coalesce(F.sum(views.completed), F.lit(0)).alias("completed")).first()
        if (view["n"], view["completed"]) != (counts["n"], counts["completed"]):
            raise ArchiveMismatch(f"{table} {day}: {view['n']} {views.count} / {view['completed']} completed, "
                                  f"predictions: {counts['n']} / {counts['completed']}")
        if table == tables.hourly:
            hourly_rows = view["rows"]
    return DayCounts(counts["n"], counts["completed"]), hourly_rows


# --------------------------------------------------------------------------- MySQL
def counts_of_day(conn: Connection, views: RealTimeViews, day: dt.date, *, lock: bool = False) -> DayCounts:
    from sqlalchemy import text

    sql = views.statement("archive_counts_of_day") + (" FOR UPDATE" if lock else "")
    row = conn.execute(text(sql), {"day": day, "next_day": day + ONE_DAY}).one()
    return DayCounts(row.predictions, row.completed)


def ledger_row(conn: Connection, view: str, day: dt.date) -> Row[Any] | None:
    from sqlalchemy import text

    return conn.execute(text("SELECT predictions, completed, purged_at FROM archive_days "
                             "WHERE view_name = :view AND day = :day"), {"view": view, "day": day}).first()


def coverage(conn: Connection, view: str, *, lock: bool = False) -> dt.date | None:
    """The view's ``covered_until``, or None when it has no coverage row."""
    from sqlalchemy import text

    sql = "SELECT covered_until FROM batch_coverage WHERE view_name = :view" + (" FOR UPDATE" if lock else "")
    return conn.execute(text(sql), {"view": view}).scalar()


def _record(eng: Engine, views: RealTimeViews, view: str, day: dt.date, counts: DayCounts) -> dt.date | None:
    """Record ``day`` as archived and move the view's coverage by the rule above; the new ``covered_until``."""
    from sqlalchemy import text

    with eng.begin() as conn:
        current = coverage(conn, view, lock=True)
        conn.execute(text(RECORD_DAY), {"view": view, "day": day, **dataclasses.asdict(counts)})
        start = current
        if start is None:
            first = conn.execute(text(views.statement("archive_first_day"))).scalar()
            if first is None:
                return None
            start = first.date()
        archived = conn.execute(text("SELECT day FROM archive_days WHERE view_name = :view AND day >= :start"),
                                {"view": view, "start": start}).scalars()
        covered = advance(start, archived)
        if covered != current:
            conn.execute(text(SET_COVERAGE), {"view": view, "covered_until": covered})
    return covered


# --------------------------------------------------------------------------- the steps
def archive(spark: SparkSession, settings: Settings, day: dt.date, *, view: str | None = None,
            lake_root: str | None = None, workload: str = DEFAULT, wait_for_master: bool = True,
            data: master.Parsed | None = None) -> Archived:
    """Recompute ``day`` of the workload in Hive from master data, verify it, record it and move the view's coverage
    (``view``: the ``batch_coverage`` row, by default the workload's hourly view).

    ``wait_for_master``: first wait until the master log holds what Kafka holds (``serving.master_wait_s``).
    ``data``: the master log already parsed (``serving.master.parsed``) with arrivals from the day before ``day``
    on, as a rebuild of several days passes it."""
    from core import lake
    from core.db import engine

    wl = load(workload)
    views = views_of(wl, settings)
    view = view or views.hourly
    db = settings.spark.hive_database
    tables = create_tables(spark, db, workload, views)
    base = lake.spark_uri(lake.root(settings, lake_root))
    rows: dict[str, int | None] = {
        table: _archive_lake_partition(spark, settings, f"{db}.{table}", wl.partition(base, day, stage), day,
                                       tables.partition)
        for table, stage in tables.lake.items()
    }
    if not settings.speed.lake_sink_path:  # the platform's master log (a test's own log gets no table)
        master.register(spark, settings)
    if data is None:
        data = master.read(spark, settings, wl, views, day, wait=wait_for_master)
    archived, view_rows = _archive_predictions(spark, db, day, tables, views, master.joined(spark, wl, views, data,
                                                                                               day))
    eng = engine(settings)
    try:
        covered = _record(eng, views, view, day, archived)
    finally:
        eng.dispose()
    if covered is not None and covered <= day:
        log.warning("coverage of %s stays at %s: archive %s first", view, covered, covered)
    return Archived(day, view, {**rows, tables.predictions: archived.predictions, tables.hourly: view_rows},
                    covered)


def apply_retention(settings: Settings, *, view: str | None = None, today: dt.date | None = None,
                    workload: str = DEFAULT) -> Retention:
    """Delete from MySQL the workload's days that are archived, covered and older than the retention window."""
    from sqlalchemy import text

    from core.db import engine

    views = views_of(load(workload), settings)
    view = view or views.hourly
    cutoff = retention_cutoff(today or dt.datetime.now(dt.UTC).date(), settings.serving.retention_days)
    purged: list[dt.date] = []
    stale: list[dt.date] = []
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            candidates = conn.execute(text(RETENTION_CANDIDATES), {"view": view, "cutoff": cutoff}).all()
        for day, predictions, completed in candidates:
            with eng.begin() as conn:
                now_in_mysql = counts_of_day(conn, views, day, lock=True)
                if now_in_mysql != DayCounts(predictions, completed):
                    log.warning("%s changed in MySQL since it was archived (%s, archived %s/%s): kept; "
                                "archive it again", day, now_in_mysql, predictions, completed)
                    stale.append(day)
                    continue
                for name in PURGE_DAY:
                    conn.execute(text(views.statement(name)), {"day": day, "next_day": day + ONE_DAY})
                conn.execute(text(MARK_PURGED), {"view": view, "day": day})
            purged.append(day)
    finally:
        eng.dispose()
    return Retention(view, cutoff, tuple(purged), tuple(stale))


def run(spark: SparkSession, settings: Settings, day: dt.date, *, view: str | None = None,
        today: dt.date | None = None, lake_root: str | None = None, workload: str = DEFAULT,
        wait_for_master: bool = True) -> tuple[Archived, Retention]:
    """Archive ``day``, then apply retention: what the workload's ``hive_archive`` DAG does."""
    archived = archive(spark, settings, day, view=view, lake_root=lake_root, workload=workload,
                       wait_for_master=wait_for_master)
    return archived, apply_retention(settings, view=archived.view, today=today, workload=workload)


# --------------------------------------------------------------------------- DAG entry points
def archive_step(day: str, view: str | None = None, settings: Settings | None = None,
                 workload: str = DEFAULT, wait_for_master: bool = True) -> dict[str, Any]:
    from core.spark import build_session

    s = settings or get_settings()
    spark = build_session(s, f"lambdaml-hive-archive-{workload}")
    spark.sparkContext.setLogLevel("WARN")
    try:
        return as_json(archive(spark, s, dt.date.fromisoformat(day), view=view, workload=workload,
                               wait_for_master=wait_for_master))
    finally:
        spark.stop()


def retention_step(view: str | None = None, settings: Settings | None = None,
                   workload: str = DEFAULT) -> dict[str, Any]:
    return as_json(apply_retention(settings or get_settings(), view=view, workload=workload))
