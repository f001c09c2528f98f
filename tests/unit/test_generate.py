from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from workloads.taxi import tlc
from workloads.taxi.generate import DIRTY_KINDS, generate_day

DAY = dt.date(2026, 11, 20)


def test_schema_is_the_tlc_schema_and_seed_is_deterministic():
    a = generate_day(DAY, 2000, seed=3)
    assert a.schema == tlc.RAW_SCHEMA
    assert a.equals(generate_day(DAY, 2000, seed=3))
    assert not a.equals(generate_day(DAY, 2000, seed=4))


def test_dirty_share_is_respected():
    t = generate_day(DAY, 6000, dirty_share=0.05).to_pandas()
    duration = (t[tlc.DROPOFF] - t[tlc.PICKUP]).dt.total_seconds()
    bad = (
        t["PULocationID"].isna()
        | t[tlc.PICKUP].isna()
        | (duration <= 0)
        | ~t["PULocationID"].between(1, 263)
        | (t[tlc.PICKUP].dt.date != DAY)
        | (t["trip_distance"] / (duration / 3600) > 80)
        | (t["trip_distance"] == 0)
        | (duration > tlc.MAX_DURATION_S)
    )
    assert bad.sum() == pytest.approx(6000 * 0.05, abs=len(DIRTY_KINDS))


def test_zones_and_hours_are_realistic():
    t = generate_day(DAY, 20000, dirty_share=0.0).to_pandas()
    assert t["PULocationID"].nunique() > 150
    hours = t[tlc.PICKUP].dt.hour.value_counts()
    assert hours[18] > 3 * hours[4]  # evening peak, night trough
    duration = (t[tlc.DROPOFF] - t[tlc.PICKUP]).dt.total_seconds()
    assert 300 < duration.median() < 3600
    # Longer trips take longer: distance explains much of the duration.
    assert np.corrcoef(t["trip_distance"], duration)[0, 1] > 0.5


@pytest.mark.parametrize("shift", [False, True])
def test_clean_trips_stay_within_the_validation_bounds(shift):
    """A clean generated trip never breaks a rule: its duration stays under tlc.MAX_DURATION_S even in the
    slowed-down drift scenario (before the cap, long cross-borough trips went on for up to 7.5 h)."""
    t = generate_day(DAY, 20000, seed=5, dirty_share=0.0, shift=shift).to_pandas()
    duration = (t[tlc.DROPOFF] - t[tlc.PICKUP]).dt.total_seconds()
    assert duration.max() < tlc.MAX_DURATION_S
    assert t["trip_distance"].between(*tlc.TRIP_DISTANCE_MILES).all()
    assert t["PULocationID"].between(*tlc.KNOWN_ZONES).all() and t["DOLocationID"].between(*tlc.KNOWN_ZONES).all()


def test_shift_slows_traffic_and_moves_demand():
    base = generate_day(DAY, 10000, dirty_share=0.0).to_pandas()
    shifted = generate_day(DAY, 10000, dirty_share=0.0, shift=True).to_pandas()
    airports = (132, 138, 1)

    def speed(t):  # median mph of trips that touch no airport (airport runs are faster by design)
        t = t[~t["DOLocationID"].isin(airports) & ~t["PULocationID"].isin(airports)]
        return (t["trip_distance"] / ((t[tlc.DROPOFF] - t[tlc.PICKUP]).dt.total_seconds() / 3600)).median()

    assert speed(shifted) < 0.85 * speed(base)
    assert shifted["DOLocationID"].isin(airports).mean() > 3 * base["DOLocationID"].isin(airports).mean()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rows"):
        generate_day(DAY, 0)
    with pytest.raises(ValueError, match="dirty_share"):
        generate_day(DAY, 10, dirty_share=0.9)
