"""Model features of the bike workload, each defined once with a Spark form and an in-process form.

The batch layer computes features with the Spark form over DataFrames; the prediction service computes them with
the numpy form over request batches. ``tests/unit/test_bike_features.py`` checks that both give the same numbers.

Input columns (the ride request at unlock, also derivable from raw Citi Bike rows): ``started_at`` (timestamp,
UTC-naive wall clock), ``start_station_id`` (text), ``rideable_type`` (text), ``member_casual`` (text). In a numpy
batch the text columns are object (or unicode) arrays, None or "" for a missing value.

Stations are hashed, not looked up: the public files hold over two thousand stations and new ones open every
month, so no table of them is part of the model. A station id goes to one of ``N_STATION_SLOTS`` slots by CRC-32
of its UTF-8 bytes, the one hash that Spark (``crc32``) and Python (``zlib.crc32``) compute alike; slot 0 stands for
"missing". Categories (rideable type, rider) are indexed from ``schema``'s one list of their values; 0 is
"unknown".
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from core import features
from core.features import Batch, Feature, memo
from workloads.bike import schema

if TYPE_CHECKING:
    from pyspark.sql import Column

N_STATION_SLOTS = 8192  # 1..8191 hashed ids; 0 stands for "missing"
CROSS_BUCKETS = 16384
RIDEABLE_CODES = {v: i + 1 for i, v in enumerate(schema.RIDEABLE_TYPES)}  # classic 1, electric 2, docked 3
RIDER_CODES = {v: i + 1 for i, v in enumerate(schema.MEMBER_CASUAL)}  # member 1, casual 2
TIME = schema.STARTED


# ----------------------------------------------------------------------------------------------------------- station

@lru_cache(maxsize=65536)
def station_slot(station_id: object) -> int:
    """The slot of one station id: 1 + CRC-32 of its UTF-8 bytes mod (slots - 1); 0 for None or ""."""
    if not isinstance(station_id, str) or station_id == "":
        return 0
    return 1 + zlib.crc32(station_id.encode("utf-8")) % (N_STATION_SLOTS - 1)


def _station_np(b: Batch) -> np.ndarray:
    def slots() -> np.ndarray:
        ids = b["start_station_id"]
        return np.fromiter((station_slot(v) for v in ids.tolist()), dtype="int64", count=len(ids))

    return memo(b, "_station", slots)


def _station_sp() -> "Column":
    from pyspark.sql import functions as F

    c = F.col("start_station_id").cast("string")
    hashed = F.pmod(F.crc32(c.cast("binary")), F.lit(N_STATION_SLOTS - 1)) + F.lit(1)
    return F.when(c.isNull() | (c == F.lit("")), F.lit(0)).otherwise(hashed).cast("int")


# ------------------------------------------------------------------------------------------------------------ codes

def _codes_np(b: Batch, col: str, codes: dict[str, int]) -> np.ndarray:
    def lookup() -> np.ndarray:
        values = b[col]
        return np.fromiter((codes.get(v, 0) if isinstance(v, str) else 0 for v in values.tolist()),
                           dtype="int64", count=len(values))

    return memo(b, f"_codes:{col}", lookup)


def _codes_sp(col: str, codes: dict[str, int]) -> "Column":
    from pyspark.sql import functions as F

    c = F.col(col).cast("string")
    out = F.lit(0)
    for value, code in reversed(codes.items()):
        out = F.when(c == F.lit(value), F.lit(code)).otherwise(out)
    return out.cast("int")


def _rideable_np(b: Batch) -> np.ndarray:
    return _codes_np(b, "rideable_type", RIDEABLE_CODES)


def _rider_np(b: Batch) -> np.ndarray:
    return _codes_np(b, "member_casual", RIDER_CODES)


# ------------------------------------------------------------------------------------------------------------- time

def _hour_np(b: Batch) -> np.ndarray:
    return features.hour_np(b, TIME)


def _dow_np(b: Batch) -> np.ndarray:
    return features.weekday_np(b, TIME)


def _hour_sp() -> "Column":
    return features.hour_sp(TIME)


def _dow_sp() -> "Column":
    return features.weekday_sp(TIME)


# ----------------------------------------------------------------------------------------------------------- crosses

def _station_hour_np(b: Batch) -> np.ndarray:
    return (_station_np(b) * 24 + _hour_np(b)) % CROSS_BUCKETS


def _station_hour_sp() -> "Column":
    return ((_station_sp() * 24 + _hour_sp()) % CROSS_BUCKETS).cast("int")


def _station_rider_np(b: Batch) -> np.ndarray:
    n_riders = len(RIDER_CODES) + 1
    return (_station_np(b) * n_riders + _rider_np(b)) % CROSS_BUCKETS


def _station_rider_sp() -> "Column":
    n_riders = len(RIDER_CODES) + 1
    return ((_station_sp() * n_riders + _codes_sp("member_casual", RIDER_CODES)) % CROSS_BUCKETS).cast("int")


# ---------------------------------------------------------------------------------------------------------- numeric

def _weekend_np(b: Batch) -> np.ndarray:
    return (_dow_np(b) >= 5).astype("float64")


def _weekend_sp() -> "Column":
    return (_dow_sp() >= 5).cast("double")


def _is_member_np(b: Batch) -> np.ndarray:
    return (_rider_np(b) == RIDER_CODES["member"]).astype("float64")


def _is_member_sp() -> "Column":
    return (_codes_sp("member_casual", RIDER_CODES) == RIDER_CODES["member"]).cast("double")


def _is_electric_np(b: Batch) -> np.ndarray:
    return (_rideable_np(b) == RIDEABLE_CODES["electric_bike"]).astype("float64")


def _is_electric_sp() -> "Column":
    return (_codes_sp("rideable_type", RIDEABLE_CODES) == RIDEABLE_CODES["electric_bike"]).cast("double")


FEATURES: tuple[Feature, ...] = (
    Feature("start_station", "categorical", _station_sp, _station_np, N_STATION_SLOTS),
    Feature("hour", "categorical", _hour_sp, _hour_np, 24),
    Feature("dow", "categorical", _dow_sp, _dow_np, 7),
    Feature("hour_of_week", "categorical", lambda: (_dow_sp() * 24 + _hour_sp()).cast("int"),
            lambda b: _dow_np(b) * 24 + _hour_np(b), 168),
    Feature("rideable", "categorical", lambda: _codes_sp("rideable_type", RIDEABLE_CODES), _rideable_np,
            len(RIDEABLE_CODES) + 1),
    Feature("rider", "categorical", lambda: _codes_sp("member_casual", RIDER_CODES), _rider_np,
            len(RIDER_CODES) + 1),
    Feature("station_hour", "categorical", _station_hour_sp, _station_hour_np, CROSS_BUCKETS),
    Feature("station_rider", "categorical", _station_rider_sp, _station_rider_np, CROSS_BUCKETS),
    Feature("is_weekend", "numeric", _weekend_sp, _weekend_np),
    Feature("is_member", "numeric", _is_member_sp, _is_member_np),
    Feature("is_electric", "numeric", _is_electric_sp, _is_electric_np),
)

FEATURE_NAMES, CATEGORICAL, NUMERIC = features.by_kind(FEATURES)
# The request fields the features read (the contract must carry every one of them).
INPUTS = (TIME, "start_station_id", "rideable_type", "member_casual")


def spec_version() -> str:
    """Identifies the feature definitions; stored with every model version."""
    return features.spec_version("bk1", FEATURES, (f"|crc32|{N_STATION_SLOTS}|{CROSS_BUCKETS}"
                                    f"|{sorted(RIDEABLE_CODES.items())}|{sorted(RIDER_CODES.items())}"))


def compute_numpy(batch: Batch) -> dict[str, np.ndarray]:
    """All features for a batch of requests (arrays keyed by feature name)."""
    return features.compute_numpy(FEATURES, batch)


def with_features(df):
    """The Spark form: ``df`` plus one column per feature."""
    return features.with_features(FEATURES, df)
