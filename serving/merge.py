"""The Lambda merge: "up to now" answers from the Hive batch view and the MySQL real-time view.

``zone_stats`` answers "trips, mean error (MAE over completed trips) and mean predicted duration
for pickup zone Z over the last N days" (today, UTC, and the N-1 days before it). Days before the
view's ``batch_coverage.covered_until`` come from Hive (``lake.zone_hour_stats`` through the
Thrift Server), days from it on from MySQL (``zone_hour_stats``). Every day is read from exactly
one side, whatever MySQL still holds of archived days until retention deletes them, so nothing is
counted twice or missed; the parts are combined as sums and counts, never as averages of averages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

from core.settings import Settings
from serving.archive import COVERAGE_VIEW, ONE_DAY, coverage

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Source = Literal["hive", "mysql"]

SUMS = ("COALESCE(SUM(trips), 0), COALESCE(SUM(sum_predicted_s), 0), "
        "COALESCE(SUM(completed), 0), COALESCE(SUM(sum_abs_error_s), 0)")
MYSQL_SUMS = (f"SELECT {SUMS} FROM zone_hour_stats "
              "WHERE pu_location_id = :zone AND hour_start >= :first_day AND hour_start < :end_day")
HIVE_SUMS = (f"SELECT {SUMS} FROM {{db}}.zone_hour_stats "
             "WHERE pu_location_id = %(zone)s AND pickup_date >= DATE %(first_day)s AND pickup_date < DATE %(end_day)s")


@dataclass(frozen=True)
class Sums:
    trips: int = 0
    sum_predicted_s: float = 0.0
    completed: int = 0
    sum_abs_error_s: float = 0.0

    def __add__(self, other: Sums) -> Sums:
        return Sums(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def mean_predicted_s(self) -> float | None:
        return self.sum_predicted_s / self.trips if self.trips else None

    @property
    def mae_s(self) -> float | None:
        return self.sum_abs_error_s / self.completed if self.completed else None


@dataclass(frozen=True)
class Part:
    source: Source
    first_day: dt.date
    last_day: dt.date
    sums: Sums


@dataclass(frozen=True)
class ZoneStats:
    zone: int
    first_day: dt.date
    last_day: dt.date
    covered_until: dt.date | None
    parts: tuple[Part, ...]

    @property
    def total(self) -> Sums:
        return sum((p.sums for p in self.parts), Sums())


def window(days: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of "the last ``days`` days": today and the days before it."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    return today - dt.timedelta(days=days - 1), today


def split(first_day: dt.date, last_day: dt.date,
          covered_until: dt.date | None) -> list[tuple[Source, dt.date, dt.date]]:
    """Days ``first_day..last_day`` as (source, first, last) parts: Hive before ``covered_until``, MySQL from it on."""
    parts: list[tuple[Source, dt.date, dt.date]] = []
    if covered_until is not None and first_day < covered_until:
        parts.append(("hive", first_day, min(last_day, covered_until - ONE_DAY)))
    realtime_first = first_day if covered_until is None else max(first_day, covered_until)
    if realtime_first <= last_day:
        parts.append(("mysql", realtime_first, last_day))
    return parts


def _mysql_sums(conn: Connection, zone: int, first_day: dt.date, last_day: dt.date) -> Sums:
    from sqlalchemy import text

    row = conn.execute(text(MYSQL_SUMS), {"zone": zone, "first_day": first_day, "end_day": last_day + ONE_DAY}).one()
    return Sums(int(row[0]), float(row[1]), int(row[2]), float(row[3]))


def _hive_sums(settings: Settings, zone: int, first_day: dt.date, last_day: dt.date) -> Sums:
    from core import hive

    sp = settings.spark
    conn = hive.connect(settings)  # as the read-only analyst
    try:
        cur = conn.cursor()
        # The Thrift Server caches file listings; the archive may have rewritten a partition since.
        cur.execute(f"REFRESH TABLE {sp.hive_database}.zone_hour_stats")
        cur.execute(HIVE_SUMS.format(db=sp.hive_database), {
            "zone": zone, "first_day": first_day.isoformat(), "end_day": (last_day + ONE_DAY).isoformat()})
        row = cur.fetchone()
    finally:
        conn.close()
    return Sums(int(row[0]), float(row[1]), int(row[2]), float(row[3]))


def zone_stats(settings: Settings, zone: int, days: int, now: dt.datetime | None = None, *,
               view: str = COVERAGE_VIEW) -> ZoneStats:
    """Trips, MAE and mean predicted duration of pickup zone ``zone`` over the last ``days`` days (UTC)."""
    from core.db import engine

    moment = now or dt.datetime.now(dt.UTC)
    first_day, last_day = window(days, moment.astimezone(dt.UTC).date() if moment.tzinfo else moment.date())
    eng = engine(settings, analyst=True)
    try:
        # One transaction: the coverage and the MySQL rows it points at are read from one snapshot.
        with eng.begin() as conn:
            covered_until = coverage(conn, view)
            plan = split(first_day, last_day, covered_until)
            realtime = {(first, last): _mysql_sums(conn, zone, first, last)
                        for source, first, last in plan if source == "mysql"}
    finally:
        eng.dispose()
    parts = tuple(
        Part(source, first, last,
             realtime[(first, last)] if source == "mysql" else _hive_sums(settings, zone, first, last))
        for source, first, last in plan
    )
    return ZoneStats(zone, first_day, last_day, covered_until, parts)
