"""Preprocess validated trips into model-ready train/validation/test splits.

Features come from ``core.features`` (the same definitions the speed layer
uses). The label is the trip duration in seconds; the model trains on its
log. Splits are by time: the earliest share of the covered period trains,
the next validates, the latest tests, so no future trip leaks into training.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import features
from core.tlc import DROPOFF, PICKUP

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

LABEL = "duration_s"
SPLITS = ("train", "val", "test")


def to_requests(validated: "DataFrame") -> "DataFrame":
    """Raw TLC columns to the request-event columns plus the label."""
    from pyspark.sql import functions as F

    return validated.select(
        F.col(PICKUP).alias("pickup_ts"),
        F.col("PULocationID").cast("double").alias("PULocationID"),
        F.col("DOLocationID").cast("double").alias("DOLocationID"),
        F.col("passenger_count").cast("double").alias("passenger_count"),
        F.col("trip_distance").cast("double").alias("trip_distance"),
        F.col("VendorID").cast("double").alias("VendorID"),
        (F.unix_timestamp(F.col(DROPOFF)) - F.unix_timestamp(F.col(PICKUP))).cast("double").alias(LABEL),
    )


def split_bounds(first_day: dt.date, last_day: dt.date, train: float = 0.7, val: float = 0.15) -> tuple[dt.datetime, dt.datetime]:
    """Cut points (train_end, val_end) over the period from first_day 00:00 to the end of last_day."""
    start = dt.datetime.combine(first_day, dt.time())
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())
    span = end - start
    return start + span * train, start + span * (train + val)


def transform(validated: "DataFrame", train_end: dt.datetime, val_end: dt.datetime) -> "DataFrame":
    """Features, label and split column for every validated trip."""
    from pyspark.sql import functions as F

    df = features.with_features(to_requests(validated))
    split = (
        F.when(F.col("pickup_ts") < _ntz(train_end), "train")
        .when(F.col("pickup_ts") < _ntz(val_end), "val")
        .otherwise("test")
    )
    return df.withColumn("split", split)


def _ntz(ts: dt.datetime):
    """A wall-clock timestamp literal. ``F.lit(datetime)`` would shift it by the host's time zone."""
    from pyspark.sql import functions as F

    return F.lit(ts.isoformat(sep=" ")).cast("timestamp_ntz")


@dataclass(frozen=True)
class PreprocessResult:
    uri: str
    rows: dict[str, int]
    feature_spec: str


def run(spark, settings, days: list[dt.date], dataset: str, lake_root: str | None = None) -> PreprocessResult:
    """Overwrite ``features/<dataset>/split=...`` from the validated partitions of ``days``."""
    from core import lake

    base = lake.spark_uri(lake.root(settings, lake_root))
    paths = [lake.partition(base, "validated/trips", d) for d in sorted(days)]
    validated = spark.read.parquet(*paths)
    train_end, val_end = split_bounds(min(days), max(days))
    out_uri = f"{base}/features/{dataset}"
    transform(validated, train_end, val_end).repartition(2, "split").write.mode("overwrite") \
        .partitionBy("split").parquet(out_uri)
    written = spark.read.parquet(out_uri)
    rows = {r["split"]: r["count"] for r in written.groupBy("split").count().collect()}
    return PreprocessResult(uri=out_uri, rows={s: rows.get(s, 0) for s in SPLITS}, feature_spec=features.spec_version())
