"""Reconciliation: the counts of each stage of a workload's events side by side, and where they differ.

``lambdaml views reconcile --workload taxi --from D1 --to D2`` prints two tables, and the monitoring DAG's daily
run logs them (``monitoring.reconcile_at``):

1. **Per topic and arrival day** (UTC, by the Kafka timestamp): the offsets Kafka holds for the day, the rows the
   master log holds, and any record the master log holds more than once. A day partly past Kafka's retention shows
   the rows Kafka still holds with ``retention`` beside them.
2. **Per event day** of the requests: the predictions (and completed ones) the master log gives (the last delivery
   of each key, valid ones only), those in the Hive batch view and those in MySQL's real-time view.

Each row ends with a verdict: ``ok``, or what differs and what to do about it (the lake sink is behind; Hive or
MySQL differ from master data: ``lambdaml views rebuild``; the day is purged from MySQL by retention, as it
should be).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from core.views import of as views_of
from core.workload import DEFAULT, load
from serving import archive, master, rebuild

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class TopicDay:
    """One topic's records that arrived on ``day``."""

    topic: str
    day: dt.date
    kafka: int  # offsets of the day Kafka still holds
    kafka_complete: bool  # False: retention deleted some of the day's records from Kafka
    master: int  # rows in the master log
    duplicates: int = 0  # master rows beyond the first of their (partition, offset)

    @property
    def verdict(self) -> str:
        if self.duplicates:
            return f"{self.duplicates} records held more than once in the master log"
        if self.master == self.kafka:
            return "ok"
        if self.master < self.kafka:
            return f"the master log lacks {self.kafka - self.master} (the lake sink is behind, or stopped)"
        if not self.kafka_complete:
            return "ok (Kafka's retention deleted the rest; the master log keeps it)"
        return f"the master log holds {self.master - self.kafka} more than Kafka's offsets"


@dataclass(frozen=True)
class ViewDay:
    """Predictions (and completed ones) of the requests made on ``day``, at each stage."""

    workload: str
    day: dt.date
    master: archive.DayCounts
    hive: archive.DayCounts | None  # None: no batch view of the day in Hive
    mysql: archive.DayCounts
    purged: bool  # retention deleted the day from MySQL
    ended: bool = True  # False: the day is today (UTC) or later, so hive_archive has not had its turn yet

    @property
    def verdict(self) -> str:
        def rebuild(flag: str) -> str:
            return f"`lambdaml views rebuild --workload {self.workload} --from {self.day} --to {self.day} {flag}`"

        problems = []
        if self.hive is None:
            if self.ended:
                problems.append("not in Hive yet (hive_archive has not run for it)")
        elif self.hive != self.master:
            problems.append(f"Hive differs from master data: {rebuild('--no-mysql')}")
        if self.purged:
            if self.mysql.predictions:
                problems.append("rows back in MySQL after retention purged the day")
        elif self.mysql != self.master:
            problems.append(f"MySQL differs from master data (the sync is behind, or rows were edited): "
                            f"{rebuild('--no-hive')}")
        if problems:
            return "; ".join(problems)
        if self.purged:
            return "ok (purged from MySQL by retention)"
        return "ok" if self.hive is not None else "ok (in Hive once the day has ended and hive_archive ran)"


@dataclass
class Reconciliation:
    workload: str
    first: dt.date
    last: dt.date
    topics: list[TopicDay]
    views: list[ViewDay]

    @property
    def differs(self) -> bool:
        return any(not r.verdict.startswith("ok") for r in [*self.topics, *self.views])

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dt.date):
                return value.isoformat()
            if isinstance(value, archive.DayCounts):
                return dataclasses.asdict(value)
            return value

        return {"workload": self.workload, "first": self.first.isoformat(), "last": self.last.isoformat(),
                "differs": self.differs,
                "topics": [{**{k: plain(v) for k, v in vars(r).items()}, "verdict": r.verdict} for r in self.topics],
                "views": [{**{k: plain(v) for k, v in vars(r).items()}, "verdict": r.verdict} for r in self.views]}

    def text(self) -> str:
        lines = [f"{self.workload}: {self.first} .. {self.last}", "",
                 "records by arrival day (UTC, the Kafka timestamp)",
                 f"{'topic':32s} {'day':10s} {'kafka':>9s} {'master':>9s}  verdict"]
        for r in self.topics:
            kafka = f"{r.kafka}{'' if r.kafka_complete else '+'}"
            lines.append(f"{r.topic:32s} {r.day} {kafka:>9s} {r.master:>9d}  {r.verdict}")
        lines += ["", "predictions / completed by event day",
                  f"{'day':10s} {'master':>13s} {'hive':>13s} {'mysql':>13s}  verdict"]

        def pair(c: archive.DayCounts | None) -> str:
            return "-" if c is None else f"{c.predictions}/{c.completed}"

        for v in self.views:
            lines.append(f"{v.day} {pair(v.master):>13s} {pair(v.hive):>13s} {pair(v.mysql):>13s}  {v.verdict}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- Kafka
def kafka_counts(settings: Settings, topics: Iterable[str], days: list[dt.date]) -> dict[tuple[str, dt.date],
                                                                                          tuple[int, bool]]:
    """Per topic and arrival day: (offsets Kafka holds for the day, whether it still holds all of them)."""
    marks, offsets = master.kafka_day_offsets(settings, topics, [*days, days[-1] + ONE_DAY])
    out: dict[tuple[str, dt.date], tuple[int, bool]] = {}
    for (topic, partition), (low, _) in marks.items():
        for day in days:
            start, end = offsets[(topic, partition, day)], offsets[(topic, partition, day + ONE_DAY)]
            count, complete = out.get((topic, day), (0, True))
            # The day starts at the first record Kafka still holds: earlier ones may be gone.
            partial = low > 0 and start == low and end > start
            out[(topic, day)] = (count + end - start, complete and not partial)
    return out


# --------------------------------------------------------------------------------------------- the stages
def reconcile(spark: SparkSession, settings: Settings, first: dt.date, last: dt.date,
              workload: str = DEFAULT, arrived: tuple[dt.date, dt.date] | None = None) -> Reconciliation:
    """The stages' counts: the views of event days ``first`` .. ``last``, the topics of arrival days ``arrived``
    (default: the same days; a replay of old days arrives today)."""
    from pyspark.sql import functions as F

    from core.db import engine

    wl = load(workload)
    views = views_of(wl, settings)
    wt = settings.kafka.for_workload(workload)
    topics = [wt.requests, wt.predictions, wt.completed, wt.dlq]
    today = dt.datetime.now(dt.UTC).date()
    days = rebuild.days(first, last)
    arrival_days = rebuild.days(*(arrived or (first, last)))

    in_kafka = kafka_counts(settings, topics, arrival_days)
    held = {(r["topic"], r["date"]): (r["rows"], r["rows"] - r["distinct"]) for r in
            master.events(spark, settings, topics, arrival_days[0]).where(F.col("date") <= F.lit(arrival_days[-1]))
            .groupBy("topic", "date").agg(F.count(F.lit(1)).alias("rows"),
                                          F.countDistinct("partition", "offset").alias("distinct")).collect()}
    topic_days = [TopicDay(t, d, *in_kafka.get((t, d), (0, True)), *held.get((t, d), (0, 0)))
                  for t in topics for d in arrival_days]

    data = master.parsed(spark, settings, wl, views, master.first_arrival(first))
    data.predictions.cache()
    data.outcomes.cache()
    db, tables = settings.spark.hive_database, archive.hive_tables(wl, views)
    hive_exists = spark.catalog.tableExists(f"{db}.{tables.predictions}")
    if hive_exists:
        spark.catalog.refreshTable(f"{db}.{tables.predictions}")
    eng = engine(settings)
    view_days = []
    try:
        for day in days:
            counts = master.joined(spark, wl, views, data, day).agg(
                F.count(F.lit(1)).alias("n"), F.count(views.actual).alias("c")).first()
            with eng.connect() as conn:
                mysql = archive.counts_of_day(conn, views, day)
                ledger = archive.ledger_row(conn, views.hourly, day)
            hive = None
            if hive_exists:
                partition = spark.table(f"{db}.{tables.predictions}").where(F.col(tables.partition) == F.lit(day))
                h = partition.agg(F.count(F.lit(1)).alias("n"), F.count(views.actual).alias("c")).first()
                hive = archive.DayCounts(h["n"], h["c"]) if h["n"] or ledger is not None else None
            purged = ledger is not None and ledger.purged_at is not None
            view_days.append(ViewDay(workload, day, archive.DayCounts(counts["n"], counts["c"]), hive, mysql,
                                     purged, ended=day < today))
    finally:
        eng.dispose()
        data.predictions.unpersist()
        data.outcomes.unpersist()
    return Reconciliation(workload, first, last, topic_days, view_days)


def reconcile_step(workload: str = DEFAULT, days: int = 2, settings: Settings | None = None) -> dict[str, Any]:
    """The monitoring DAG's reconciliation: the last ``days`` days (UTC, today included), logged and returned."""
    from core.settings import get_settings
    from core.spark import build_session

    s = settings or get_settings()
    today = dt.datetime.now(dt.UTC).date()
    spark = build_session(s, f"lambdaml-reconcile-{workload}")
    spark.sparkContext.setLogLevel("WARN")
    try:
        result = reconcile(spark, s, today - dt.timedelta(days=days - 1), today, workload)
    finally:
        spark.stop()
    log.info("reconciliation\n%s", result.text())
    if result.differs:
        log.warning("%s: counts differ between the stages; see the verdicts above", workload)
    return result.as_json()
