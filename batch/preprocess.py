"""Preprocess a workload's validated rows into model-ready train/validation/test splits.

The workload declares how a validated row becomes a training example (``Workload.examples``: the request's fields
and the label) and its features (the same definitions the speed layer uses). Splits are by time: the earliest share
of the covered period trains, the next validates, the latest tests, so no future event leaks into training.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.lake import DataError
from core.workload import Workload
from core.workload import default as default_workload

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SPLITS = ("train", "val", "test")


class SplitTooSmall(DataError):
    """A split holds fewer rows than ``batch.min_split_rows``: tuning, training or evaluating on it means nothing."""


def cut_points(examples: "DataFrame", time: str, train: float = 0.7, val: float = 0.15,
               accuracy: int = 10_000) -> tuple[dt.datetime, dt.datetime]:
    """(train_end, val_end): the ``train`` and ``train + val`` quantiles of the event time column ``time`` over the
    rows present (Spark's ``percentile_approx``; rank error at most 1/``accuracy`` of the rows)."""
    from pyspark.sql import functions as F

    q = examples.select(F.percentile_approx(time, [train, train + val], accuracy).alias("q")).first()["q"]
    if not q:
        raise DataError("no validated rows to split: every row was quarantined, or the days hold no data")
    return q[0], q[1]


def check_splits(rows: dict[str, int], minimum: int, days: list[dt.date]) -> None:
    """Refuse splits below ``minimum`` rows, saying how many each got and what to do."""
    small = [s for s in SPLITS if rows.get(s, 0) < minimum]
    if not small:
        return
    got = ", ".join(f"{s} {rows.get(s, 0):,}" for s in SPLITS)
    span = f"{min(days)} .. {max(days)}" if days else "no days"
    raise SplitTooSmall(
        f"the time-ordered split of {span} gave {got} rows; {', '.join(small)} below the minimum of {minimum:,} "
        f"(LAMBDAML_BATCH__MIN_SPLIT_ROWS). Train on more days (a wider start_date/end_date or days_back), load more "
        f"data with `lambdaml ingest`, or lower the minimum. Nothing was tuned or trained.")


def transform(examples: "DataFrame", train_end: dt.datetime, val_end: dt.datetime,
              workload: Workload | None = None) -> "DataFrame":
    """Features and split column for every example (``Workload.examples`` of the validated rows)."""
    from pyspark.sql import functions as F

    wl = workload or default_workload()
    time = F.col(wl.request.event_time)
    df = wl.features.with_features(examples)
    split = (
        F.when(time < _ntz(train_end), "train")
        .when(time < _ntz(val_end), "val")
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
    cuts: tuple[str, str] = ("", "")  # (train_end, val_end) event times


def run(spark, settings, days: list[dt.date], dataset: str, lake_root: str | None = None,
        workload: Workload | None = None) -> PreprocessResult:
    """Overwrite ``features/<dataset>/split=...`` from the workload's validated partitions of ``days``.

    Raises ``SplitTooSmall`` (after writing, before anything is tuned) when a split holds fewer than
    ``settings.batch.min_split_rows`` rows."""
    from core import lake

    wl = workload or default_workload()
    base = lake.spark_uri(lake.root(settings, lake_root))
    paths = [wl.partition(base, d, "validated") for d in sorted(days)]
    examples = wl.examples(spark.read.parquet(*paths))
    train_end, val_end = cut_points(examples, wl.request.event_time, settings.batch.train_share,
                                    settings.batch.val_share)
    out_uri = f"{base}/features/{dataset}"
    transform(examples, train_end, val_end, wl).repartition(2, "split").write.mode("overwrite") \
        .partitionBy("split").parquet(out_uri)
    written = spark.read.parquet(out_uri)
    counted = {r["split"]: r["count"] for r in written.groupBy("split").count().collect()}
    rows = {s: counted.get(s, 0) for s in SPLITS}
    check_splits(rows, settings.batch.min_split_rows, sorted(days))
    return PreprocessResult(uri=out_uri, rows=rows, feature_spec=wl.features.spec_version(),
                            cuts=(train_end.isoformat(sep=" "), val_end.isoformat(sep=" ")))
