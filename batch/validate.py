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
from core.workload import Workload
from core.workload import default as default_workload

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

REASON_COL = "failed_rule"


def tag(df: "DataFrame", partition_date: dt.date, workload: Workload | None = None) -> "DataFrame":
    """``df`` plus ``failed_rule``: the first of the workload's rules (``Workload.rules``) each row fails, or null."""
    from pyspark.sql import functions as F

    wl = workload or default_workload()
    reason = F.lit(None).cast("string")
    for name, bad in reversed(wl.rules(partition_date)):
        reason = F.when(F.coalesce(bad, F.lit(False)), F.lit(name)).otherwise(reason)
    return df.withColumn(REASON_COL, reason)


def split(df: "DataFrame", partition_date: dt.date,
          workload: Workload | None = None) -> tuple["DataFrame", "DataFrame"]:
    """(valid rows without the tag, quarantined rows with it)."""
    from pyspark.sql import functions as F

    tagged = tag(df, partition_date, workload)
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


def run(spark, settings, day: dt.date, lake_root: str | None = None,
        workload: Workload | None = None) -> Reconciliation:
    """Validate one raw partition of the workload (taxi when none is named); overwrite its validated and
    quarantine partitions."""
    from pyspark.sql import functions as F

    from core import lake

    wl = workload or default_workload()
    base = lake.spark_uri(lake.root(settings, lake_root))
    raw_uri = wl.partition(base, day)
    objects = raw_files.partition_objects(settings, raw_uri)
    raw = raw_files.read_partition_spark(spark, settings, raw_uri, wl, objects)
    tagged = tag(raw, day, wl).cache()
    try:
        valid_uri = wl.partition(base, day, "validated")
        quarantine_uri = wl.partition(base, day, "quarantine")
        tagged.where(F.col(REASON_COL).isNull()).drop(REASON_COL).write.mode("overwrite").parquet(valid_uri)
        tagged.where(F.col(REASON_COL).isNotNull()).write.mode("overwrite").parquet(quarantine_uri)
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
