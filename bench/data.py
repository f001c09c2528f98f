"""Benchmark inputs: valid raw trips over one week, cached on disk by size and seed."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workloads.taxi.contract import LABEL
from bench.common import CACHE_DIR
from workloads.taxi.features import Batch
from workloads.taxi.generate import generate_day
from workloads.taxi.tlc import DROPOFF, PICKUP

FIRST_DAY = dt.date(2026, 11, 2)  # a Monday: the week covers every day of the week
DAYS = 7


def days() -> list[dt.date]:
    return [FIRST_DAY + dt.timedelta(days=i) for i in range(DAYS)]


def raw_days(rows: int, seed: int) -> list[pa.Table]:
    """``rows`` valid trips (``dirty_share=0``) spread over the week, one table per day."""
    sizes = [len(part) for part in np.array_split(np.arange(rows), DAYS)]
    return [generate_day(day, n, seed=seed, dirty_share=0.0) for day, n in zip(days(), sizes) if n]


def raw_trips(rows: int, seed: int, echo: Callable[[str], None] = print) -> Path:
    """A folder of raw TLC Parquet files, one per day, generated once per (rows, seed)."""
    target = CACHE_DIR / f"raw-trips-{rows}-seed{seed}"
    if target.is_dir():
        echo(f"raw trips: cached {target}")
        return target
    echo(f"raw trips: generating {rows:,} rows into {target}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for day, table in zip(days(), raw_days(rows, seed)):
        pq.write_table(table, partial / f"part-{day.isoformat()}.parquet")
    partial.rename(target)
    return target


def requests(raw: pa.Table) -> Batch:
    """Raw TLC rows as the request columns ``workloads.taxi.features`` reads, plus the label (as
    ``batch.preprocess``)."""
    pickup = raw.column(PICKUP).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    dropoff = raw.column(DROPOFF).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    as_double = {c: raw.column(c).to_numpy(zero_copy_only=False).astype("float64")
                 for c in ("PULocationID", "DOLocationID", "passenger_count", "trip_distance", "VendorID")}
    duration = (dropoff.astype("datetime64[s]") - pickup.astype("datetime64[s]")).astype("int64").astype("float64")
    return {"pickup_ts": pickup, **as_double, LABEL: duration}
