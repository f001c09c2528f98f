"""Hive archive: one pickup day into Hive, then the batch coverage, then MySQL retention.

For day D, through Spark and the shared metastore, partition ``pickup_date=D`` of four tables of
the Hive database (``lake``; DDL in ``sql/hive/``) is overwritten:

- ``trips`` from the lake's ``validated/trips`` partition of D and ``quarantine`` from its
  ``quarantine/trips`` partition, each when the lake has it (a lake cleaned up after archiving
  never empties Hive);
- ``predictions``: ``predictions_recent`` LEFT JOIN ``trip_outcomes`` for pickups on D, from MySQL;
- ``zone_hour_stats``: the batch view of D, computed from the archived predictions with the
  definition of MySQL's real-time view.

Verify: Hive's rows of D equal the source's (lake files; MySQL counted again after the write, so
rows the sync added meanwhile fail the run, and Airflow's retry archives them).

Coverage (``batch_coverage.covered_until`` of a view: Hive holds every day before it, the
merge query reads MySQL from it on). A verified day is recorded in ``archive_days``; coverage
then moves over consecutive recorded days only, so it never jumps a day that was not archived.
An empty day is a day like any other: recorded once archived (its partitions emptied), it
moves coverage only when coverage has reached it. A day after a gap is recorded and waits
until the gap is archived. With no coverage row yet, coverage starts at the first day MySQL
holds predictions of (nothing before it needs Hive); with no predictions at all, no row is made.

Retention deletes a day's rows from ``predictions_recent``, ``trip_outcomes`` (of its trips)
and ``zone_hour_stats`` only when the day is recorded as archived, before ``covered_until``,
older than ``serving.retention_days``, and MySQL still holds exactly the rows archived (checked
under lock in the deleting transaction): late rows are never deleted unarchived; such a day is
reported stale until it is archived again. A purged day's Hive copy is the only one left, so
re-running its archive keeps Hive's predictions and view and rewrites only the lake tables.

MySQL is read with Spark's JDBC source (the MariaDB driver is on Spark's classpath for the
metastore) rather than through pandas and ``createDataFrame``: a day is ~100k rows, which one
JDBC read streams into the executors with MySQL's own types and no copy through the Python
driver, and the same code reads a larger day when the master is a cluster. ``DATETIME`` is read
as ``TIMESTAMP_NTZ`` (no shift by the JVM's time zone) and stored as Hive's ``TIMESTAMP`` in
the UTC session time zone of every platform session, so wall-clock times are unchanged and the
tables stay readable by Hive itself, not only by Spark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType
    from sqlalchemy.engine import Connection, Engine, Row

log = logging.getLogger(__name__)

COVERAGE_VIEW = "zone_hour_stats"
PARTITION = "pickup_date"
LAKE_TABLES = {"trips": "validated/trips", "quarantine": "quarantine/trips"}
ONE_DAY = dt.timedelta(days=1)

# Columns in lake.predictions' order (sql/hive/predictions.sql). Dates are formatted from dt.date.
PREDICTIONS_OF_DAY = """
SELECT p.trip_id, p.model_version, p.pu_location_id, p.do_location_id, p.passenger_count, p.trip_distance,
       p.pickup_ts, p.predicted_duration_s, p.event_ts, p.scored_ts, o.dropoff_ts, o.duration_s AS actual_duration_s
FROM predictions_recent p LEFT JOIN trip_outcomes o ON o.trip_id = p.trip_id
WHERE p.pickup_ts >= '{day}' AND p.pickup_ts < '{next_day}'
"""
COUNTS_OF_DAY = """
SELECT COUNT(*) AS predictions, COUNT(o.trip_id) AS completed
FROM predictions_recent p LEFT JOIN trip_outcomes o ON o.trip_id = p.trip_id
WHERE p.pickup_ts >= :day AND p.pickup_ts < :next_day
"""
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
PURGE_DAY = (
    ("DELETE o FROM trip_outcomes o JOIN predictions_recent p ON p.trip_id = o.trip_id"
     " WHERE p.pickup_ts >= :day AND p.pickup_ts < :next_day"),
    "DELETE FROM predictions_recent WHERE pickup_ts >= :day AND pickup_ts < :next_day",
    "DELETE FROM zone_hour_stats WHERE hour_start >= :day AND hour_start < :next_day",
    "UPDATE archive_days SET purged_at = CURRENT_TIMESTAMP(3) WHERE view_name = :view AND day = :day",
)


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


def zone_hour_view(predictions: DataFrame) -> DataFrame:
    """Per pickup zone and hour: trips, sum of predicted, completed, sum of actual and of |predicted - actual|
    over the completed trips (MySQL's real-time ``zone_hour_stats``)."""
    from pyspark.sql import functions as F

    predicted, actual = F.col("predicted_duration_s"), F.col("actual_duration_s")
    return predictions.groupBy("pu_location_id", F.date_trunc("hour", "pickup_ts").alias("hour_start")).agg(
        F.count(F.lit(1)).alias("trips"),
        F.sum(predicted).alias("sum_predicted_s"),
        F.count(actual).alias("completed"),
        F.coalesce(F.sum(actual), F.lit(0.0)).alias("sum_actual_s"),
        F.coalesce(F.sum(F.abs(predicted - actual)), F.lit(0.0)).alias("sum_abs_error_s"),
    )


def aligned(df: DataFrame, schema: StructType, day: dt.date) -> DataFrame:
    """``df`` as rows of a table with ``schema``: its columns by name and type, then the partition of ``day``."""
    from pyspark.sql import functions as F

    columns = [F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields if f.name != PARTITION]
    return df.select(*columns, F.lit(day).alias(PARTITION))


# --------------------------------------------------------------------------- Hive (Spark)
def create_tables(spark: SparkSession, db: str) -> None:
    from core.db import load_sql

    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    for table in (*LAKE_TABLES, "predictions", "zone_hour_stats"):
        spark.sql(load_sql(f"hive/{table}").replace("lake.", f"{db}."))


def _overwrite_partition(spark: SparkSession, table: str, df: DataFrame, day: dt.date) -> None:
    """Make partition ``day`` of ``table`` hold exactly ``df``'s rows (none: the partition is dropped)."""
    if df.isEmpty():
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({PARTITION} = '{day.isoformat()}')")
        return
    aligned(df, spark.table(table).schema, day).write.insertInto(table, overwrite=True)


def _partition(spark: SparkSession, table: str, day: dt.date) -> DataFrame:
    from pyspark.sql import functions as F

    return spark.table(table).where(F.col(PARTITION) == F.lit(day))


def _lake_has(settings: Settings, uri: str) -> bool:
    import pyarrow.fs as pafs

    from core import lake

    fs, path = lake.filesystem(settings, uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _archive_lake_partition(spark: SparkSession, settings: Settings, table: str, uri: str,
                            day: dt.date) -> int | None:
    """Copy one lake partition into the table's partition of ``day``; None when the lake has none."""
    if not _lake_has(settings, uri):
        return None
    source = spark.read.parquet(uri)
    expected = source.count()
    _overwrite_partition(spark, table, source, day)
    written = _partition(spark, table, day).count()
    if written != expected:
        raise ArchiveMismatch(f"{table} {day}: {written} rows in Hive, {expected} in {uri}")
    return written


def _read_mysql(spark: SparkSession, settings: Settings, query: str) -> DataFrame:
    from sqlalchemy.engine import make_url

    from core.spark import metastore_credentials

    host, port = settings.mysql.server_host_port()
    database = make_url(settings.mysql.url).database if settings.mysql.url else settings.mysql.database
    user, password = metastore_credentials(settings)  # the application account, wherever MySQL is
    # The jdbc:mysql scheme makes Spark use its MySQL dialect (a jdbc:mariadb URL gets the generic one, whose
    # "quoted" column names MySQL reads as strings); permitMysqlScheme makes the MariaDB driver accept it.
    return (spark.read.format("jdbc")
            .option("url", f"jdbc:mysql://{host}:{port}/{database}?permitMysqlScheme")
            .option("driver", "org.mariadb.jdbc.Driver")
            .option("user", user).option("password", password)
            .option("query", query)
            .option("fetchsize", "10000")
            .option("preferTimestampNTZ", "true")
            .load())


def _archive_predictions(spark: SparkSession, settings: Settings, db: str, day: dt.date) -> tuple[DayCounts, int]:
    """Predictions of ``day`` and their batch view into Hive; (counts of the archived predictions, view rows)."""
    from pyspark.sql import functions as F

    source = _read_mysql(spark, settings, PREDICTIONS_OF_DAY.format(day=day, next_day=day + ONE_DAY)).cache()
    try:
        _overwrite_partition(spark, f"{db}.predictions", source, day)
    finally:
        source.unpersist()
    archived = _partition(spark, f"{db}.predictions", day)
    _overwrite_partition(spark, f"{db}.zone_hour_stats", zone_hour_view(archived), day)

    counts = archived.agg(F.count(F.lit(1)).alias("n"), F.count("actual_duration_s").alias("completed")).first()
    view = _partition(spark, f"{db}.zone_hour_stats", day).agg(
        F.count(F.lit(1)).alias("rows"), F.coalesce(F.sum("trips"), F.lit(0)).alias("trips"),
        F.coalesce(F.sum("completed"), F.lit(0)).alias("completed")).first()
    if (view["trips"], view["completed"]) != (counts["n"], counts["completed"]):
        raise ArchiveMismatch(f"zone_hour_stats {day}: {view['trips']} trips / {view['completed']} completed, "
                              f"predictions: {counts['n']} / {counts['completed']}")
    return DayCounts(counts["n"], counts["completed"]), view["rows"]


# --------------------------------------------------------------------------- MySQL
def _counts_of_day(conn: Connection, day: dt.date, *, lock: bool = False) -> DayCounts:
    from sqlalchemy import text

    sql = COUNTS_OF_DAY + (" FOR UPDATE" if lock else "")
    row = conn.execute(text(sql), {"day": day, "next_day": day + ONE_DAY}).one()
    return DayCounts(row.predictions, row.completed)


def _ledger_row(conn: Connection, view: str, day: dt.date) -> Row[Any] | None:
    from sqlalchemy import text

    return conn.execute(text("SELECT predictions, completed, purged_at FROM archive_days "
                             "WHERE view_name = :view AND day = :day"), {"view": view, "day": day}).first()


def coverage(conn: Connection, view: str, *, lock: bool = False) -> dt.date | None:
    """The view's ``covered_until``, or None when it has no coverage row."""
    from sqlalchemy import text

    sql = "SELECT covered_until FROM batch_coverage WHERE view_name = :view" + (" FOR UPDATE" if lock else "")
    return conn.execute(text(sql), {"view": view}).scalar()


def _record(eng: Engine, view: str, day: dt.date, counts: DayCounts) -> dt.date | None:
    """Record ``day`` as archived and move the view's coverage by the rule above; the new ``covered_until``."""
    from sqlalchemy import text

    with eng.begin() as conn:
        current = coverage(conn, view, lock=True)
        conn.execute(text(RECORD_DAY), {"view": view, "day": day, **dataclasses.asdict(counts)})
        start = current
        if start is None:
            first = conn.execute(text("SELECT MIN(pickup_ts) FROM predictions_recent")).scalar()
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
def archive(spark: SparkSession, settings: Settings, day: dt.date, *, view: str = COVERAGE_VIEW,
            lake_root: str | None = None) -> Archived:
    """Archive ``day`` to Hive, verify it, record it and move the view's coverage."""
    from core import lake
    from core.db import engine

    db = settings.spark.hive_database
    create_tables(spark, db)
    base = lake.spark_uri(lake.root(settings, lake_root))
    rows: dict[str, int | None] = {
        table: _archive_lake_partition(spark, settings, f"{db}.{table}", lake.partition(base, dataset, day, PARTITION), day)
        for table, dataset in LAKE_TABLES.items()
    }
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            ledger = _ledger_row(conn, view, day)
        if ledger is not None and ledger.purged_at is not None:
            log.info("%s was purged from MySQL at %s: Hive keeps its predictions and view", day, ledger.purged_at)
            with eng.connect() as conn:
                covered = coverage(conn, view)
            return Archived(day, view, {**rows, "predictions": None, "zone_hour_stats": None}, covered)
        archived, view_rows = _archive_predictions(spark, settings, db, day)
        with eng.connect() as conn:
            in_mysql = _counts_of_day(conn, day)
        if archived != in_mysql:
            raise ArchiveMismatch(f"predictions {day}: Hive holds {archived}, MySQL {in_mysql} (the sync wrote "
                                  "meanwhile? a retry archives the day again)")
        covered = _record(eng, view, day, archived)
    finally:
        eng.dispose()
    if covered is not None and covered <= day:
        log.warning("coverage of %s stays at %s: archive %s first", view, covered, covered)
    return Archived(day, view, {**rows, "predictions": archived.predictions, "zone_hour_stats": view_rows}, covered)


def apply_retention(settings: Settings, *, view: str = COVERAGE_VIEW, today: dt.date | None = None) -> Retention:
    """Delete from MySQL the days that are archived, covered and older than the retention window."""
    from sqlalchemy import text

    from core.db import engine

    cutoff = retention_cutoff(today or dt.datetime.now(dt.UTC).date(), settings.serving.retention_days)
    purged: list[dt.date] = []
    stale: list[dt.date] = []
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            candidates = conn.execute(text(RETENTION_CANDIDATES), {"view": view, "cutoff": cutoff}).all()
        for day, predictions, completed in candidates:
            with eng.begin() as conn:
                now_in_mysql = _counts_of_day(conn, day, lock=True)
                if now_in_mysql != DayCounts(predictions, completed):
                    log.warning("%s changed in MySQL since it was archived (%s, archived %s/%s): kept; "
                                "archive it again", day, now_in_mysql, predictions, completed)
                    stale.append(day)
                    continue
                for statement in PURGE_DAY:
                    conn.execute(text(statement), {"view": view, "day": day, "next_day": day + ONE_DAY})
            purged.append(day)
    finally:
        eng.dispose()
    return Retention(view, cutoff, tuple(purged), tuple(stale))


def run(spark: SparkSession, settings: Settings, day: dt.date, *, view: str = COVERAGE_VIEW,
        today: dt.date | None = None, lake_root: str | None = None) -> tuple[Archived, Retention]:
    """Archive ``day``, then apply retention: what the ``hive_archive`` DAG does."""
    archived = archive(spark, settings, day, view=view, lake_root=lake_root)
    return archived, apply_retention(settings, view=view, today=today)


# --------------------------------------------------------------------------- DAG entry points
def archive_step(day: str, view: str = COVERAGE_VIEW, settings: Settings | None = None) -> dict[str, Any]:
    from core.spark import build_session

    s = settings or get_settings()
    spark = build_session(s, "lambdaml-hive-archive")
    spark.sparkContext.setLogLevel("WARN")
    try:
        return as_json(archive(spark, s, dt.date.fromisoformat(day), view=view))
    finally:
        spark.stop()


def retention_step(view: str = COVERAGE_VIEW, settings: Settings | None = None) -> dict[str, Any]:
    return as_json(apply_retention(settings or get_settings(), view=view))
