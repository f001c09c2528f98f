"""Validate one raw partition: named quality rules, quarantine with the reason.

Every row either passes every rule or goes to quarantine tagged with the
first rule it failed, so ``rows in = valid + quarantined`` holds by
construction; ``run`` checks it anyway on the written outputs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import raw as raw_files
from workloads.taxi import WORKLOAD, tlc
from workloads.taxi.tlc import DROPOFF, PICKUP

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REASON_COL = "failed_rule"


def _duration_s() -> "Column":
    from pyspark.sql import functions as F

    return F.unix_timestamp(F.col(DROPOFF)) - F.unix_timestamp(F.col(PICKUP))


def rules(partition_date: dt.date) -> list[tuple[str, "Column"]]:
    """(name, condition-that-means-bad) pairs, checked in this order.

    Every range is ``workloads.taxi.tlc``'s, the definition the request contract (``workloads/taxi/contract.py``)
    is derived from too. ``passenger_count`` 0 passes on purpose (see ``tlc.PASSENGER_COUNT``); a null
    count passes (real files have them; the feature reads it as 1).
    """
    from pyspark.sql import functions as F

    duration = _duration_s()
    speed = F.col("trip_distance") / (duration / F.lit(3600.0))
    zone_lo, zone_hi = tlc.KNOWN_ZONES
    zone_ok = lambda c: F.col(c).between(zone_lo, zone_hi)  # noqa: E731 - 264/265 are "Unknown" in the lookup
    dist_lo, dist_hi = tlc.TRIP_DISTANCE_MILES
    pass_lo, pass_hi = tlc.PASSENGER_COUNT
    return [
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


RULE_NAMES = ("null_required_field", "outside_partition", "non_positive_duration", "duration_too_long",
              "unknown_zone", "zero_distance", "negative_or_huge_distance", "passenger_count_out_of_range",
              "impossible_speed")


def tag(df: "DataFrame", partition_date: dt.date) -> "DataFrame":
    """``df`` plus ``failed_rule``: the first rule each row fails, or null."""
    from pyspark.sql import functions as F

    reason = F.lit(None).cast("string")
    for name, bad in reversed(rules(partition_date)):
        reason = F.when(F.coalesce(bad, F.lit(False)), F.lit(name)).otherwise(reason)
    return df.withColumn(REASON_COL, reason)


def split(df: "DataFrame", partition_date: dt.date) -> tuple["DataFrame", "DataFrame"]:
    """(valid rows without the tag, quarantined rows with it)."""
    from pyspark.sql import functions as F

    tagged = tag(df, partition_date)
    return tagged.where(F.col(REASON_COL).isNull()).drop(REASON_COL), tagged.where(F.col(REASON_COL).isNotNull())


@dataclass(frozen=True)
class Reconciliation:
    rows_in: int
    valid: int
    quarantined: int
    by_rule: dict[str, int]
    objects: tuple[raw_files.RawObject, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rows_in == self.valid + self.quarantined and sum(self.by_rule.values()) == self.quarantined


def run(spark, settings, day: dt.date, lake_root: str | None = None) -> Reconciliation:
    """Validate one raw partition; overwrite its validated and quarantine partitions."""
    from pyspark.sql import functions as F

    from core import lake

    base = lake.spark_uri(lake.root(settings, lake_root))
    raw_uri = lake.partition(base, tlc.RAW_DATASET, day)
    objects = raw_files.partition_objects(settings, raw_uri)
    raw = raw_files.read_partition_spark(spark, settings, raw_uri, WORKLOAD, objects)
    tagged = tag(raw, day).withColumn("pickup_date", F.lit(day)).cache()
    try:
        valid_uri = lake.partition(base, "validated/trips", day)
        quarantine_uri = lake.partition(base, "quarantine/trips", day)
        tagged.where(F.col(REASON_COL).isNull()).drop(REASON_COL, "pickup_date") \
            .write.mode("overwrite").parquet(valid_uri)
        tagged.where(F.col(REASON_COL).isNotNull()).drop("pickup_date") \
            .write.mode("overwrite").parquet(quarantine_uri)
        rows_in = tagged.count()
    finally:
        tagged.unpersist()
    # Reconcile against what was actually written, not against the plan.
    written_bad = spark.read.parquet(quarantine_uri)
    result = Reconciliation(
        rows_in=rows_in,
        valid=spark.read.parquet(valid_uri).count(),
        quarantined=written_bad.count(),
        by_rule={r[REASON_COL]: r["count"] for r in written_bad.groupBy(REASON_COL).count().collect()},
        objects=tuple(objects),
    )
    if not result.ok:
        raise RuntimeError(f"row counts do not reconcile for {day}: {result}")
    return result
