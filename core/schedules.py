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
