"""Preprocess validated trips into model-ready train/validation/test splits.

Features come from ``workloads.taxi.features`` (the same definitions the speed layer
uses). The label is the trip duration in seconds; the model trains on its
log. Splits are by time: the earliest share of the covered period trains,
the next validates, the latest tests, so no future trip leaks into training.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.lake import DataError
from core.workload import default as default_workload
from workloads.taxi.tlc import DROPOFF, PICKUP

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

features = default_workload().features
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


class SplitTooSmall(DataError):
    """A split holds fewer trips than ``batch.min_split_rows``: tuning, training or evaluating on it means nothing."""


def cut_points(requests: "DataFrame", train: float = 0.7, val: float = 0.15,
               accuracy: int = 10_000) -> tuple[dt.datetime, dt.datetime]:
    """(train_end, val_end): the ``train`` and ``train + val`` quantiles of ``pickup_ts`` over the rows present
    (Spark's ``percentile_approx``; rank error at most 1/``accuracy`` of the rows)."""
    from pyspark.sql import functions as F

    q = requests.select(F.percentile_approx("pickup_ts", [train, train + val], accuracy).alias("q")).first()["q"]
    if not q:
        raise DataError("no validated trips to split: every row was quarantined, or the days hold no data")
    return q[0], q[1]


def check_splits(rows: dict[str, int], minimum: int, days: list[dt.date]) -> None:
    """Refuse splits below ``minimum`` trips, saying how many each got and what to do."""
    small = [s for s in SPLITS if rows.get(s, 0) < minimum]
    if not small:
        return
    got = ", ".join(f"{s} {rows.get(s, 0):,}" for s in SPLITS)
    span = f"{min(days)} .. {max(days)}" if days else "no days"
    raise SplitTooSmall(
        f"the time-ordered split of {span} gave {got} trips; {', '.join(small)} below the minimum of {minimum:,} "
        f"(LAMBDAML_BATCH__MIN_SPLIT_ROWS). Train on more days (a wider start_date/end_date or days_back), load more "
        f"data with `lambdaml ingest`, or lower the minimum. Nothing was tuned or trained.")


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
    cuts: tuple[str, str] = ("", "")  # (train_end, val_end) pickup times


def run(spark, settings, days: list[dt.date], dataset: str, lake_root: str | None = None) -> PreprocessResult:
    """Overwrite ``features/<dataset>/split=...`` from the validated partitions of ``days``.

    Raises ``SplitTooSmall`` (after writing, before anything is tuned) when a split holds fewer than
    ``settings.batch.min_split_rows`` trips."""
    from core import lake

    base = lake.spark_uri(lake.root(settings, lake_root))
    paths = [lake.partition(base, "validated/trips", d) for d in sorted(days)]
    validated = spark.read.parquet(*paths)
    train_end, val_end = cut_points(to_requests(validated), settings.batch.train_share, settings.batch.val_share)
    out_uri = f"{base}/features/{dataset}"
    transform(validated, train_end, val_end).repartition(2, "split").write.mode("overwrite") \
        .partitionBy("split").parquet(out_uri)
    written = spark.read.parquet(out_uri)
    counted = {r["split"]: r["count"] for r in written.groupBy("split").count().collect()}
    rows = {s: counted.get(s, 0) for s in SPLITS}
    check_splits(rows, settings.batch.min_split_rows, sorted(days))
    return PreprocessResult(uri=out_uri, rows=rows, feature_spec=features.spec_version(),
                            cuts=(train_end.isoformat(sep=" "), val_end.isoformat(sep=" ")))
