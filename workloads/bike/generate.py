"""Realistic Citi Bike rides in the public trip schema, for the demo and the tests.

Rides follow a simple city model with the structure the task is about, so a model has something to learn:

- where: docks weighted by popularity (``stations.py``); a handful of tourist docks (parks, piers) draw casual
  riders, who ride long loops from there;
- when: commute peaks on weekdays, a flatter midday hump at weekends; more casual riders at weekends and midday;
- who and what: casual riders ride longer than members (and have 30 included minutes against 45), e-bikes are
  faster than classic bikes;
- noise: log-normal durations around that typical time.

Overall about one ride in ten runs past its included minutes (``schema.INCLUDED_MINUTES``), mostly casual riders
at tourist docks. A configurable share of rows is made dirty in the ways real files are (``DIRTY_KINDS``, each
caught by one validation rule of ``schema.RULES``: ``DIRTY_RULE``). ``shift`` is the drift scenario, a heat wave
in tourist season: many more casual riders at the tourist docks, and everyone slower. The same seed gives the
same rides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from workloads.bike import schema, stations

# Each kind of dirty row, and the validation rule (schema.RULES) that quarantines it: the first rule it fails.
DIRTY_RULE = {
    "null_start_station": "null_start_station",  # an e-bike rented off-dock
    "non_positive_duration": "non_positive_duration",  # ended_at before started_at
    "duration_too_long": "duration_too_long",  # over 24 h: a bike never docked
    "unknown_rideable_type": "unknown_rideable_type",  # "scooter", "ebike", ""
    "outside_partition": "outside_partition",  # started two days before the day it was filed under
    "null_started_at": "null_required_field",
    "unknown_member_casual": "unknown_member_casual",  # "Subscriber"/"Customer": pre-2021 values
    "zero_coordinates": "start_outside_service_area",  # 0.0/0.0: no GPS fix
}
DIRTY_KINDS = tuple(DIRTY_RULE)

# Share of rides starting in each hour of the day (Citi Bike's weekday commute peaks; weekends peak at midday).
WEEKDAY_DEMAND = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.2, 0.6, 2.0, 4.5, 7.5, 5.5, 4.0, 4.2, 4.8, 4.9, 5.0, 5.6, 6.8, 8.8, 8.2, 6.2, 4.6,
     3.6, 2.6, 1.5]
)
WEEKEND_DEMAND = np.array(
    [1.3, 0.9, 0.6, 0.4, 0.3, 0.35, 0.7, 1.4, 2.6, 4.0, 5.6, 6.6, 7.2, 7.4, 7.4, 7.2, 6.8, 6.2, 5.4, 4.4, 3.5,
     2.8, 2.2, 1.6]
)
NEAREST = 12  # a ride ends at one of the start dock's nearest docks, or back where it started


@dataclass(frozen=True)
class RidePattern:
    """Knobs of the city model; ``shifted()`` is the drift scenario."""

    casual_share: float = 0.20  # casual riders among the rides from an ordinary dock, weekday, commute hours
    tourist_casual_share: float = 0.55  # ... from a tourist dock
    weekend_casual_boost: float = 0.12  # added at weekends
    midday_casual_boost: float = 0.06  # added 11:00-18:00
    tourist_demand: float = 1.0  # multiplies the tourist docks' popularity
    electric_share: float = 0.5
    member_minutes: float = 11.0  # typical (median) ride of a member on a classic bike from an ordinary dock
    casual_minutes: float = 18.0
    tourist_casual_factor: float = 2.0  # casual riders from a tourist dock ride leisure loops
    electric_factor: float = 0.75  # e-bikes are faster
    weekend_factor: float = 1.15
    slowdown: float = 1.0  # multiplies every ride's duration
    round_trip_share: float = 0.35  # casual rides from a tourist dock that end where they started
    sigma: float = 0.6  # log-normal noise

    def shifted(self) -> "RidePattern":
        # A heat wave in tourist season: the tourist docks crowd with casual riders, and everyone rides slower.
        return replace(self, casual_share=0.26, tourist_casual_share=0.8, tourist_demand=3.0, slowdown=1.3)


def _pattern(shift: "bool | RidePattern") -> tuple[RidePattern, int]:
    """The pattern and the number the rng is seeded with for it (0 unshifted, 1 the drift scenario)."""
    if isinstance(shift, RidePattern):
        if shift == RidePattern():
            return shift, 0
        if shift == RidePattern().shifted():
            return shift, 1
        return shift, int(hashlib.sha256(repr(shift).encode()).hexdigest()[:8], 16)
    return (RidePattern().shifted(), 1) if shift else (RidePattern(), 0)


def hour_factor(hour: np.ndarray, weekend: bool, member: np.ndarray) -> np.ndarray:
    """Duration multiplier by hour: members commute fast at the peaks, everyone dawdles in the afternoon."""
    commute = ~weekend & (((hour >= 7) & (hour < 10)) | ((hour >= 16) & (hour < 19)))
    leisure = (hour >= 11) & (hour < 18)
    night = (hour < 5) | (hour >= 23)
    return (np.where(commute & member, 0.88, 1.0) * np.where(leisure, 1.12, 1.0) * np.where(night, 0.9, 1.0))


def casual_probability(pattern: RidePattern, tourist: np.ndarray, hour: np.ndarray, weekend: bool) -> np.ndarray:
    p = np.where(tourist, pattern.tourist_casual_share, pattern.casual_share)
    p = p + (pattern.weekend_casual_boost if weekend else 0.0)
    p = p + np.where((hour >= 11) & (hour < 18), pattern.midday_casual_boost, 0.0)
    return np.clip(p, 0.0, 0.95)


def soft_cap(duration_s: np.ndarray, knee_s: float = 3 * 3600,
             top_s: float = 0.8 * schema.MAX_DURATION_S) -> np.ndarray:
    """Durations past ``knee_s`` bent smoothly towards ``top_s``: a clean ride stays under the validation bound
    (``schema.MAX_DURATION_S``); the order of durations is kept."""
    over = duration_s > knee_s
    span = top_s - knee_s
    return np.where(over, knee_s + span * np.tanh((duration_s - knee_s) / span), duration_s)


def _ride_ids(rng: np.random.Generator, rows: int) -> np.ndarray:
    """16 upper-case hex digits, as the public files' ride ids."""
    return np.array([f"{v:016X}" for v in rng.integers(0, 2**63, size=rows, dtype=np.int64).tolist()], dtype=object)


def generate_day(day: dt.date, rows: int, seed: int = 7, dirty_share: float = 0.03,
                 shift: "bool | RidePattern" = False) -> pa.Table:
    """``rows`` rides started on ``day``, in ``schema.RAW_SCHEMA``. ``shift``: True for the drift scenario
    (``RidePattern().shifted()``), or any ``RidePattern``."""
    if rows <= 0:
        raise ValueError("rows must be positive")
    if not 0.0 <= dirty_share < 0.5:
        raise ValueError("dirty_share must be in [0, 0.5)")
    pattern, shift_code = _pattern(shift)
    rng = np.random.default_rng([seed, day.toordinal(), shift_code])
    st = stations.load()
    weekend = day.weekday() >= 5

    # Where and when.
    popularity = st.popularity * np.where(st.tourist, pattern.tourist_demand, 1.0)
    start = rng.choice(len(st), size=rows, p=popularity / popularity.sum())
    demand = WEEKEND_DEMAND if weekend else WEEKDAY_DEMAND
    hour = rng.choice(24, size=rows, p=demand / demand.sum())
    millis = hour * 3_600_000 + rng.integers(0, 3_600_000, size=rows)
    midnight = np.datetime64(day.isoformat(), "us")
    started = midnight + (millis * 1000).astype("timedelta64[us]")
    tourist = st.tourist[start]

    # Who and what.
    casual = rng.random(rows) < casual_probability(pattern, tourist, hour, weekend)
    member = ~casual
    electric = rng.random(rows) < pattern.electric_share

    # How long.
    minutes = np.where(member, pattern.member_minutes, pattern.casual_minutes)
    minutes = minutes * np.where(casual & tourist, pattern.tourist_casual_factor, 1.0)
    minutes = minutes * np.exp(st.effect[start]) * hour_factor(hour, weekend, member)
    minutes = minutes * np.where(electric, pattern.electric_factor, 1.0)
    minutes = minutes * (pattern.weekend_factor if weekend else 1.0) * pattern.slowdown
    duration_s = soft_cap(minutes * 60.0 * rng.lognormal(0.0, pattern.sigma, size=rows))
    duration_ms = np.maximum(np.round(duration_s * 1000.0), 61_000).astype("int64")  # the files drop rides < 60 s
    ended = started + (duration_ms * 1000).astype("timedelta64[us]")

    # Where to: a nearby dock, the same one for a casual loop from a tourist dock; a few rides end off-dock.
    near = st.nearest(NEAREST)
    end = near[start, rng.integers(0, NEAREST, size=rows)]
    loop = casual & tourist & (rng.random(rows) < pattern.round_trip_share)
    end[loop] = start[loop]
    off_dock = rng.random(rows) < 0.004
    # E-bikes report GPS (jittered around the dock); classic bikes the dock's own position.
    jitter = lambda: np.where(electric, rng.normal(0.0, 0.0002, size=rows), 0.0)  # noqa: E731
    start_lat, start_lng = (st.lat[start] + jitter()).round(6), (st.lng[start] + jitter()).round(6)
    end_lat, end_lng = (st.lat[end] + jitter()).round(6), (st.lng[end] + jitter()).round(6)
    no_end_gps = off_dock & (~electric | (rng.random(rows) < 0.3))

    ride_id = _ride_ids(rng, rows)
    rideable = np.where(electric, "electric_bike", "classic_bike").astype(object)
    rider = np.where(member, "member", "casual").astype(object)
    start_id, start_name = st.ids[start].copy(), st.names[start].copy()
    end_id = np.where(off_dock, None, st.ids[end]).astype(object)
    end_name = np.where(off_dock, None, st.names[end]).astype(object)

    # Dirty rows, every kind in turn.
    n_dirty = int(round(rows * dirty_share))
    dirty_rows = rng.choice(rows, size=n_dirty, replace=False)
    started_null = np.zeros(rows, dtype=bool)
    for j, i in enumerate(dirty_rows):
        kind = DIRTY_KINDS[j % len(DIRTY_KINDS)]
        if kind == "null_start_station":
            start_id[i] = start_name[i] = None
        elif kind == "non_positive_duration":
            ended[i] = started[i] - np.timedelta64(int(rng.integers(0, 600_000)), "ms")
        elif kind == "duration_too_long":
            ended[i] = started[i] + np.timedelta64(schema.MAX_DURATION_S + 60 + int(rng.integers(0, 5 * 86_400)), "s")
        elif kind == "unknown_rideable_type":
            rideable[i] = ("scooter", "ebike", "")[j // len(DIRTY_KINDS) % 3]
        elif kind == "outside_partition":
            started[i] -= np.timedelta64(2, "D")
            ended[i] -= np.timedelta64(2, "D")
        elif kind == "null_started_at":
            started_null[i] = True
        elif kind == "unknown_member_casual":
            rider[i] = ("Subscriber", "Customer")[j // len(DIRTY_KINDS) % 2]
        elif kind == "zero_coordinates":
            start_lat[i] = start_lng[i] = 0.0

    columns = {
        "ride_id": pa.array(ride_id, pa.string()),
        "rideable_type": pa.array(rideable, pa.string()),
        "started_at": pa.array(started, pa.timestamp("us"), mask=started_null),
        "ended_at": pa.array(ended, pa.timestamp("us")),
        "start_station_name": pa.array(start_name, pa.string()),
        "start_station_id": pa.array(start_id, pa.string()),
        "end_station_name": pa.array(end_name, pa.string()),
        "end_station_id": pa.array(end_id, pa.string()),
        "start_lat": pa.array(start_lat, pa.float64()),
        "start_lng": pa.array(start_lng, pa.float64()),
        "end_lat": pa.array(end_lat, pa.float64(), mask=no_end_gps),
        "end_lng": pa.array(end_lng, pa.float64(), mask=no_end_gps),
        "member_casual": pa.array(rider, pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=schema.RAW_SCHEMA)


def generate(settings, start: dt.date, days: int, rows_per_day: int, seed: int = 7, dirty_share: float = 0.03,
             shift: bool = False, lake_root: str | None = None, echo=print) -> list[str]:
    """Generate ``days`` daily raw partitions starting at ``start`` (``core.generation``: an existing file is kept);
    returns the files' URIs. The arguments are taxi's ``generate``'s, in the same order (``lambdaml generate``
    passes them so)."""
    from core.generation import generate_days
    from workloads.bike import WORKLOAD

    return generate_days(settings, WORKLOAD, generate_day, start, days, rows_per_day, seed, dirty_share, shift,
                         lake_root, echo)
