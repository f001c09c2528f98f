"""Rebuild a workload's views of a date range from master data: how the platform recovers from human error.

``lambdaml views rebuild --workload taxi --from 2026-12-01 --to 2026-12-03`` reads the workload's predictions and
outcomes from the master log once (``serving.master``: the lake sink's copy of the topics, every arrival from the
day before ``--from`` on) and, for each day of the range (by the requests' event time):

- **Hive**: recomputes the day's batch views and moves the coverage, as the daily ``hive_archive`` does
  (``serving.archive.archive``);
- **MySQL**: replaces the day's rows of the real-time views (predictions, their outcomes, the hourly view) with the
  rows computed from the master log, in one transaction, with the serving sync's own statements
  (``serving.sync.write_chunk``). A day that retention has purged from MySQL is left purged: its batch view is in
  Hive.

A hand edit, a deleted row or a sync bug in MySQL, and a lost or wrong Hive partition, are undone; rows that the
master log does not hold are not invented. Re-running a range changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.db import load_sql
from core.settings import Settings
from core.views import RealTimeViews
from core.views import of as views_of
from core.workload import DEFAULT, Workload, load
from serving import archive, master, sync

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class DayRebuilt:
    day: dt.date
    hive: dict[str, int | None] = field(default_factory=dict)  # Hive rows of the day per table
    mysql: dict[str, int] | None = None  # MySQL rows written per table; None: left as it was (purged, or not asked)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _purged(eng: Engine, view: str, day: dt.date) -> bool:
    with eng.connect() as conn:
        ledger = archive.ledger_row(conn, view, day)
    return ledger is not None and ledger.purged_at is not None


def _mysql_day(spark: SparkSession, eng: Engine, wl: Workload, views: RealTimeViews, data: master.Parsed,
               day: dt.date) -> dict[str, int]:
    """Replace the day's MySQL rows of the workload's real-time views with those of the master log."""
    from pyspark.sql import functions as F
    from sqlalchemy import text

    predictions = data.predictions.where(
        (F.col(views.time) >= F.lit(dt.datetime.combine(day, dt.time())).cast("timestamp_ntz"))
        & (F.col(views.time) < F.lit(dt.datetime.combine(day + archive.ONE_DAY, dt.time())).cast("timestamp_ntz"))
    ).select(*(c.name for c in views.prediction_columns))
    outcomes = master.outcomes_of(data, predictions, views).select(
        *(c.name for c in views.table_columns[views.outcomes]))
    rows = sync.ChunkRows(wl, views)
    for r in predictions.toLocalIterator():
        p = sync.prediction_row(tuple(r), views)
        rows.predictions[p.key] = p
    for r in outcomes.toLocalIterator():
        rows.outcomes[r[0]] = sync.OutcomeRow(*r)
    with eng.connect() as conn:  # one session: the sync's temporary table of hour keys lives in it
        cursor = conn.connection.cursor()
        sync.ensure_tables(cursor, views)
        cursor.execute(load_sql("serving/sync_hour_keys_drop"))
        cursor.execute(views.statement("sync_hour_keys_create"))
        conn.commit()
        for name in archive.PURGE_DAY:
            conn.execute(text(views.statement(name)), {"day": day, "next_day": day + archive.ONE_DAY})
        hour_keys = sync.write_chunk(cursor, rows, consumer_name="")
        conn.commit()
    return {views.predictions: len(rows.predictions), views.outcomes: len(rows.outcomes), views.hourly: hour_keys}


def rebuild(spark: SparkSession, settings: Settings, first: dt.date, last: dt.date, *, workload: str = DEFAULT,
            hive: bool = True, mysql: bool = True, wait_for_master: bool = True) -> list[DayRebuilt]:
    """Rebuild the workload's Hive and MySQL views of ``first`` .. ``last`` (event days) from the master log."""
    from core.db import engine

    wl = load(workload)
    views = views_of(wl, settings)
    data = master.read(spark, settings, wl, views, first, wait=wait_for_master)
    data.predictions.cache()
    data.outcomes.cache()
    out = []
    eng = engine(settings)
    try:
        for day in days(first, last):
            done = DayRebuilt(day)
            if hive:
                done.hive = archive.archive(spark, settings, day, workload=workload, data=data).rows
            if mysql and not _purged(eng, views.hourly, day):
                done.mysql = _mysql_day(spark, eng, wl, views, data, day)
            log.info("%s %s: Hive %s, MySQL %s", workload, day, done.hive, done.mysql)
            out.append(done)
    finally:
        eng.dispose()
        data.predictions.unpersist()
        data.outcomes.unpersist()
    return out


def as_json(result: list[DayRebuilt]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(r), "day": r.day.isoformat()} for r in result]
