"""The taxi workload's named validation rules: what ``batch.validate`` quarantines a raw TLC row for.

Every range is ``tlc``'s, the definition the request contract (``contract.py``) is derived from too, so the
endpoint never accepts a trip that validation would quarantine. ``passenger_count`` 0 passes on purpose (see
``tlc.PASSENGER_COUNT``); a null count passes (real files have them; the feature reads it as 1).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from workloads.taxi import tlc
from workloads.taxi.tlc import DROPOFF, PICKUP

if TYPE_CHECKING:
    from pyspark.sql import Column

RULE_NAMES = ("null_required_field", "outside_partition", "non_positive_duration", "duration_too_long",
              "unknown_zone", "zero_distance", "negative_or_huge_distance", "passenger_count_out_of_range",
              "impossible_speed")


def duration_s() -> "Column":
    """Dropoff minus pickup, in seconds."""
    from pyspark.sql import functions as F

    return F.unix_timestamp(F.col(DROPOFF)) - F.unix_timestamp(F.col(PICKUP))


def rules(partition_date: dt.date) -> list[tuple[str, "Column"]]:
    """(name, condition-that-means-bad) pairs, checked in this order (``RULE_NAMES``)."""
    from pyspark.sql import functions as F

    duration = duration_s()
    speed = F.col("trip_distance") / (duration / F.lit(3600.0))
    zone_lo, zone_hi = tlc.KNOWN_ZONES
    zone_ok = lambda c: F.col(c).between(zone_lo, zone_hi)  # noqa: E731 - 264/265 are "Unknown" in the lookup
    dist_lo, dist_hi = tlc.TRIP_DISTANCE_MILES
    pass_lo, pass_hi = tlc.PASSENGER_COUNT
    out = [
        ("null_required_field", F.greatest(*[F.col(c).isNull().cast("int") for c in tlc.REQUIRED]) == 1),
        ("outside_partition", F.to_date(F.col(PICKUP)) != F.lit(partition_date)),
        ("non_positive_duration", duration <= 0),
        ("duration_too_long", duration > tlc.MAX_DURATION_S),
        ("unknown_zone", ~(zone_ok("PULocationID") & zone_ok("DOLocationID"))),
        ("zero_distance", (F.col("trip_distance") >= 0) & (F.col("trip_distance") < dist_lo)),
        ("negative_or_huge_distance", (F.col("trip_distance") < 0) | (F.col("trip_distance") > dist_hi)),
        ("passenger_count_out_of_range", ~F.col("passenger_count").between(pass_lo, pass_hi)),
        ("impossible_speed", speed > tlc.MAX_SPEED_MPH),
    ]
    assert tuple(name for name, _ in out) == RULE_NAMES
    return out
