"""The DAGs' cron schedules, with one rule for the first run of a new or newly unpaused DAG.

The first run is the next slot, or the latest one if it was missed by at most ``FIRST_RUN_GRACE``.
Airflow's default (``run_immediately=False``) is documented as "wait for the next slot", but its
code runs the latest missed slot at once when it was missed by less than a tenth of the time
between slots (at least 5 minutes): for a daily DAG, anything up to 2.4 hours. ``batch_training``
unpaused at 04:00 would then have trained at once on the days before, and ``hive_archive`` at 08:00
would have archived at once. Imported by DAG files at parse time: keep it light.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.timetables.trigger import CronTriggerTimetable

FIRST_RUN_GRACE = dt.timedelta(minutes=5)


def cron(expression: str) -> "CronTriggerTimetable":
    """A cron schedule in UTC whose first run is at most ``FIRST_RUN_GRACE`` late."""
    from airflow.timetables.trigger import CronTriggerTimetable

    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=FIRST_RUN_GRACE)


def in_daily_slot(run_after: dt.datetime, at: str, slot: dt.timedelta) -> bool:
    """Whether a run of a frequent schedule (one run every ``slot``) falls in the daily slot starting at ``at``
    (``HH:MM`` UTC): its one run a day that does the daily work."""
    hour, minute = (int(x) for x in at.split(":"))
    utc = run_after.astimezone(dt.UTC) if run_after.tzinfo else run_after
    start = utc.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return start <= utc < start + slot
