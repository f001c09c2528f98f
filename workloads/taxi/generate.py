"""Realistic NYC yellow-taxi trips in the TLC schema, for the demo and the tests.

Trips follow a simple city model: pickup demand by hour, zones weighted by
borough, street distances between zone centroids, speeds that depend on the
hour of the week, the borough and airport runs, and multiplicative noise. A
configurable share of rows is made dirty in the ways real TLC files are.
The same seed gives the same trips.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from workloads.taxi import tlc, zones

DIRTY_KINDS = (
    "null_pickup_zone",
    "non_positive_duration",
    "impossible_speed",
    "unknown_zone",
    "outside_partition",
    "null_pickup_time",
    "zero_distance",
    "duration_too_long",
)

# Share of pickups per hour of day (a weekday profile; weekends are flatter).
HOURLY_DEMAND = np.array(
    [2.2, 1.5, 1.0, 0.7, 0.6, 0.8, 1.8, 3.5, 4.8, 4.9, 4.7, 4.9, 5.2, 5.3, 5.4, 5.6, 5.8, 6.4, 7.0, 6.8, 6.0, 5.5,
     4.8, 3.4]
)
BOROUGH_PICKUP_WEIGHT = {"Manhattan": 8.0, "Queens": 1.6, "Brooklyn": 1.4, "Bronx": 0.5, "Staten Island": 0.1,
                         "EWR": 0.05}


@dataclass(frozen=True)
class TrafficPattern:
    """Knobs of the city model; ``shifted()`` is the drift scenario."""

    manhattan_mph: float = 11.0
    outer_mph: float = 17.0
    airport_mph: float = 24.0
    rush_factor: float = 0.62
    night_factor: float = 1.45
    weekend_factor: float = 1.12
    airport_share: float = 0.06
    noise_sigma: float = 0.18

    def shifted(self) -> "TrafficPattern":
        # Slower traffic everywhere and many more airport runs: both features and errors drift.
        return TrafficPattern(
            manhattan_mph=self.manhattan_mph * 0.7, outer_mph=self.outer_mph * 0.7,
            airport_mph=self.airport_mph * 0.75, airport_share=0.35, noise_sigma=self.noise_sigma,
        )


def speed_mph(pattern: TrafficPattern, hour: np.ndarray, dow: np.ndarray, pu_borough: np.ndarray,
              do_borough: np.ndarray, airport: np.ndarray) -> np.ndarray:
    """Typical speed for each trip from the hour of week, the boroughs and airport runs."""
    both_manhattan = (pu_borough == "Manhattan") & (do_borough == "Manhattan")
    base = np.where(airport, pattern.airport_mph, np.where(both_manhattan, pattern.manhattan_mph, pattern.outer_mph))
    weekday = dow < 5
    rush = weekday & (((hour >= 7) & (hour < 10)) | ((hour >= 16) & (hour < 20)))
    night = (hour < 6) | (hour >= 22)
    factor = np.where(rush, pattern.rush_factor, 1.0) * np.where(night, pattern.night_factor, 1.0)
    factor = factor * np.where(weekday, 1.0, pattern.weekend_factor)
    return base * factor


def soft_cap(duration_s: np.ndarray, knee_s: float = 2 * 3600, top_s: float = 0.95 * tlc.MAX_DURATION_S) -> np.ndarray:
    """Durations past ``knee_s`` bent smoothly towards ``top_s``: a clean generated trip stays under the
    validation bound (``tlc.MAX_DURATION_S``). Long slow cross-borough trips of the city model went on for
    up to 7.5 h, which real yellow trips do not; the order of durations is kept."""
    over = duration_s > knee_s
    span = top_s - knee_s
    return np.where(over, knee_s + span * np.tanh((duration_s - knee_s) / span), duration_s)


def generate_day(day: dt.date, rows: int, seed: int = 7, dirty_share: float = 0.03,
                 shift: bool = False) -> pa.Table:
    """``rows`` trips picked up on ``day``, in ``tlc.RAW_SCHEMA``."""
    if rows <= 0:
        raise ValueError("rows must be positive")
    if not 0.0 <= dirty_share < 0.5:
        raise ValueError("dirty_share must be in [0, 0.5)")
    pattern = TrafficPattern().shifted() if shift else TrafficPattern()
    rng = np.random.default_rng([seed, day.toordinal(), int(shift)])
    z = zones.load()
    known = z.known_ids

    weights = np.array([BOROUGH_PICKUP_WEIGHT.get(z.borough[i], 0.1) for i in known])
    pu = rng.choice(known, size=rows, p=weights / weights.sum())
    # Mostly short hops in the same borough, some cross-borough, some airport runs.
    same_borough = rng.random(rows) < 0.7
    do = rng.choice(known, size=rows, p=weights / weights.sum())
    for name in np.unique(z.borough[pu]):
        rows_here = np.flatnonzero(same_borough & (z.borough[pu] == name))
        candidates = known[z.borough[known] == name]
        do[rows_here] = candidates[rng.integers(len(candidates), size=len(rows_here))]
    to_airport = rng.random(rows) < pattern.airport_share
    do[to_airport] = rng.choice(zones.AIRPORT_ZONES, size=int(to_airport.sum()))
    airport = np.isin(pu, zones.AIRPORT_ZONES) | np.isin(do, zones.AIRPORT_ZONES)

    hour_weights = HOURLY_DEMAND / HOURLY_DEMAND.sum()
    hour = rng.choice(24, size=rows, p=hour_weights)
    seconds = hour * 3600 + rng.integers(0, 3600, size=rows)
    midnight = np.datetime64(day.isoformat(), "us")
    pickup = midnight + seconds.astype("timedelta64[s]").astype("timedelta64[us]")
    dow = np.full(rows, day.weekday())

    km = z.distance_km(pu, do) * rng.lognormal(0.0, 0.12, size=rows)
    miles = np.round(km * 0.621371, 2)
    mph = speed_mph(pattern, hour, dow, z.borough[pu], z.borough[do], airport)
    duration_s = (miles / mph * 3600.0 + 90.0) * rng.lognormal(0.0, pattern.noise_sigma, size=rows)
    duration_s = np.maximum(np.round(soft_cap(duration_s)), 30).astype("int64")
    dropoff = pickup + duration_s.astype("timedelta64[s]").astype("timedelta64[us]")

    minutes = duration_s / 60.0
    fare = np.round(3.0 + 2.5 * miles + 0.5 * minutes, 2)
    tip = np.round(fare * rng.choice([0.0, 0.15, 0.2, 0.25], size=rows), 2)
    tolls = np.where(airport, 6.94, 0.0)
    airport_fee = np.where(np.isin(pu, (132, 138)), 1.75, 0.0)
    congestion = np.where(z.borough[do] == "Manhattan", 2.5, 0.0)
    total = np.round(fare + tip + tolls + airport_fee + congestion + 0.5 + 1.0, 2)
    passengers = rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6], size=rows).astype("float64")
    passengers[rng.random(rows) < 0.02] = np.nan  # real files have null counts; they are valid

    pu_out = pu.astype("float64")
    pickup_out = pickup.copy()
    dropoff_out = dropoff.copy()
    km_out = miles.copy()
    n_dirty = int(round(rows * dirty_share))
    dirty_rows = rng.choice(rows, size=n_dirty, replace=False)
    pickup_null = np.zeros(rows, dtype=bool)
    for j, i in enumerate(dirty_rows):
        kind = DIRTY_KINDS[j % len(DIRTY_KINDS)]
        if kind == "null_pickup_zone":
            pu_out[i] = np.nan
        elif kind == "non_positive_duration":
            dropoff_out[i] = pickup_out[i] - np.timedelta64(int(rng.integers(0, 600)), "s")
        elif kind == "impossible_speed":
            km_out[i] = 150.0
            dropoff_out[i] = pickup_out[i] + np.timedelta64(240, "s")
        elif kind == "unknown_zone":
            pu_out[i] = float(rng.choice([264, 265, 0, 300]))
        elif kind == "outside_partition":
            pickup_out[i] = pickup_out[i] - np.timedelta64(2, "D")
            dropoff_out[i] = dropoff_out[i] - np.timedelta64(2, "D")
        elif kind == "null_pickup_time":
            pickup_null[i] = True
        elif kind == "zero_distance":
            km_out[i] = 0.0
        elif kind == "duration_too_long":  # a meter left running
            dropoff_out[i] = pickup_out[i] + np.timedelta64(tlc.MAX_DURATION_S + 600 + 60 * (i % 600), "s")

    def ints(values: np.ndarray, typ: pa.DataType) -> pa.Array:
        mask = np.isnan(values)
        return pa.array(np.where(mask, 0, values).astype("int64"), mask=mask).cast(typ)

    columns = {
        "VendorID": pa.array(rng.choice([1, 2], size=rows, p=[0.3, 0.7]).astype("int32")),
        "tpep_pickup_datetime": pa.array(pickup_out, type=pa.timestamp("us"), mask=pickup_null),
        "tpep_dropoff_datetime": pa.array(dropoff_out, type=pa.timestamp("us")),
        "passenger_count": ints(passengers, pa.int64()),
        "trip_distance": pa.array(km_out, type=pa.float64()),
        "RatecodeID": pa.array(np.where(np.isin(do, (1,)), 3, np.where(np.isin(do, (132,)), 2, 1)).astype("int64")),
        "store_and_fwd_flag": pa.array(np.where(rng.random(rows) < 0.005, "Y", "N")),
        "PULocationID": ints(pu_out, pa.int32()),
        "DOLocationID": pa.array(do.astype("int32")),
        "payment_type": pa.array(rng.choice([1, 2], size=rows, p=[0.8, 0.2]).astype("int64")),
        "fare_amount": pa.array(fare),
        "extra": pa.array(np.where((hour >= 20) | (hour < 6), 1.0, 0.0)),
        "mta_tax": pa.array(np.full(rows, 0.5)),
        "tip_amount": pa.array(tip),
        "tolls_amount": pa.array(tolls),
        "improvement_surcharge": pa.array(np.full(rows, 1.0)),
        "total_amount": pa.array(total),
        "congestion_surcharge": pa.array(congestion),
        "Airport_fee": pa.array(airport_fee),
    }
    return pa.Table.from_pydict(columns, schema=tlc.RAW_SCHEMA)


def generate(settings, start: dt.date, days: int, rows_per_day: int, seed: int = 7, dirty_share: float = 0.03,
             shift: bool = False, lake_root: str | None = None, echo=print) -> list[str]:
    """Generate ``days`` daily raw partitions starting at ``start`` (``core.generation``: an existing file is kept);
    returns the files' URIs."""
    from core.generation import generate_days
    from workloads.taxi import WORKLOAD

    return generate_days(settings, WORKLOAD, generate_day, start, days, rows_per_day, seed, dirty_share, shift,
                         lake_root, echo)
