"""What every workload's features share: the ``Feature`` definition and the scaffolding around a tuple of them.

A workload defines each feature once (``workloads/<name>/features.py``), in two forms that agree: a Spark column
(preprocessing) and a numpy function of a batch of requests (the service and the stream). The rest is the same
for every workload and lives here: computing all of them, adding all of them as Spark columns, splitting them by
kind, and the hash that names their definitions (stored with every model version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import Column

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "categorical" (int id with `cardinality`) or "numeric" (float)
    spark: Callable[[], "Column"]
    numpy: Callable[[Batch], np.ndarray]
    cardinality: int = 0


def memo(b: Batch, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, kept in the batch under ``key``: several features share an intermediate (a zone, an hour).
    ``compute_numpy`` gives all features one copy of the caller's batch, so the cache lives for one call."""
    if key not in b:
        b[key] = compute()
    return b[key]


# Time of day and day of week, shared by every workload with an event time. Both forms are arithmetic on the
# wall clock's seconds since 1970-01-01 (the platform's Spark sessions run in UTC). Spark's own ``hour()`` goes
# through ``java.time`` for every row (an ``Instant``, a ``ZonedDateTime`` and new ``ZoneRules`` for the UTC
# offset): a Flight Recording of the preprocessing bench found it in 14% of the executor's samples.

def hour_np(b: Batch, col: str) -> np.ndarray:
    """Hour of day, 0-23, of the datetime64 column ``col``."""
    def hour() -> np.ndarray:
        ts = b[col].astype("datetime64[s]")
        return ((ts - ts.astype("datetime64[D]")).astype("int64") // 3600).astype("int64")

    return memo(b, f"_hour:{col}", hour)


def weekday_np(b: Batch, col: str) -> np.ndarray:
    """Day of week, Monday = 0, of the datetime64 column ``col``."""
    def weekday() -> np.ndarray:
        days = b[col].astype("datetime64[D]").astype("int64")
        return ((days + 3) % 7).astype("int64")  # 1970-01-01 was a Thursday

    return memo(b, f"_weekday:{col}", weekday)


def hour_sp(col: str) -> "Column":
    """``hour_np`` as a Spark column."""
    from pyspark.sql import functions as F

    return (F.pmod(F.unix_timestamp(col), F.lit(86_400)) / 3600).cast("int")


def weekday_sp(col: str) -> "Column":
    """``weekday_np`` as a Spark column."""
    from pyspark.sql import functions as F

    return F.pmod(F.floor(F.unix_timestamp(col) / 86_400) + 3, F.lit(7)).cast("int")


def by_kind(features: tuple[Feature, ...]) -> tuple[tuple[str, ...], tuple[Feature, ...], tuple[Feature, ...]]:
    """(names, categorical features, numeric features), in definition order."""
    return (tuple(f.name for f in features), tuple(f for f in features if f.kind == "categorical"),
            tuple(f for f in features if f.kind == "numeric"))


def spec_version(prefix: str, features: tuple[Feature, ...], constants: str) -> str:
    """``<prefix>-<hash>`` of the features' names, kinds and cardinalities and the ``constants`` they depend on."""
    text = "|".join(f"{f.name}:{f.kind}:{f.cardinality}" for f in features) + constants
    return f"{prefix}-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def compute_numpy(features: tuple[Feature, ...], batch: Batch) -> dict[str, np.ndarray]:
    """All features for a batch of requests (arrays keyed by feature name)."""
    memo = dict(batch)  # the features' shared intermediates go here, not into the caller's dict
    return {f.name: f.numpy(memo) for f in features}


def with_features(features: tuple[Feature, ...], df):
    """The Spark form: ``df`` plus one column per feature."""
    return df.withColumns({f.name: f.spark() for f in features})
