"""The ride generator: deterministic, dirty as asked (each dirty row caught by its rule), realistic in its
overtime rate, learnable (a station-hour baseline beats the global rate on a held-out day), and drifting when
shifted. Pure: numpy and pyarrow, a temporary folder for the partitions."""

from __future__ import annotations

import collections
import datetime as dt
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workloads.bike import features, schema, stations
from workloads.bike.generate import DIRTY_KINDS, DIRTY_RULE, RidePattern, generate, generate_day

DAY = dt.date(2024, 6, 5)  # a Wednesday


@cache
def clean(day: dt.date, rows: int = 20000, seed: int = 7, shift: bool = False) -> pa.Table:
    return generate_day(day, rows, seed=seed, dirty_share=0.0, shift=shift)


def labelled(table: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(overtime label, features, duration in minutes) of clean rows."""
    started = table.column("started_at").to_numpy()
    minutes = (table.column("ended_at").to_numpy() - started).astype("int64") / 60e6
    rider = table.column("member_casual").to_numpy(zero_copy_only=False)
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in features.INPUTS}
    return schema.overtime_numpy(minutes * 60, rider), features.compute_numpy(batch), minutes


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rates(keys: np.ndarray, y: np.ndarray, prior: np.ndarray | float, m: float) -> dict[int, float]:
    """Rate of ``y`` per key, shrunk towards ``prior`` (per row or one value) with ``m`` pseudo-rows."""
    uniq, inv = np.unique(keys, return_inverse=True)
    prior_sum = np.bincount(inv, weights=np.broadcast_to(prior, y.shape))
    n = np.bincount(inv)
    return dict(zip(uniq.tolist(), ((np.bincount(inv, weights=y) + m * prior_sum / n) / (n + m)).tolist(), strict=True))


def test_schema_is_the_raw_schema_and_seed_is_deterministic():
    a = generate_day(DAY, 2000, seed=3)
    assert a.schema == schema.RAW_SCHEMA
    assert a.equals(generate_day(DAY, 2000, seed=3))
    assert not a.equals(generate_day(DAY, 2000, seed=4))
    assert not a.equals(generate_day(DAY + dt.timedelta(days=1), 2000, seed=3))
    assert stations.load() is stations.load() and len(set(stations.load().ids)) == len(stations.load())


def test_rides_look_like_the_public_files():
    t = clean(DAY)
    ids = t.column("ride_id").to_pylist()
    assert len(set(ids)) == len(ids) and all(len(i) == 16 and int(i, 16) >= 0 for i in ids[:100])
    starts = set(t.column("start_station_id").to_pylist())
    assert len(starts) > 250 and any(s.startswith("HB") for s in starts) and any("." in s for s in starts)
    assert set(t.column("rideable_type").to_pylist()) == {"classic_bike", "electric_bike"}
    assert set(t.column("member_casual").to_pylist()) == {"member", "casual"}
    assert 0 < t.column("end_station_id").null_count < 0.02 * len(t)  # a few rides end off-dock
    assert t.column("end_lat").null_count < t.column("end_station_id").null_count  # e-bikes still report GPS
    started = t.column("started_at").to_numpy()
    assert (started.astype("datetime64[D]") == np.datetime64(DAY)).all()
    assert (started.astype("int64") % 1000 == 0).all() and (started.astype("int64") % 1_000_000 != 0).any()  # ms
    hours = collections.Counter(started.astype("datetime64[h]").astype("int64") % 24)
    assert hours[8] > 5 * hours[3] and hours[17] > 5 * hours[3]  # commute peaks, night trough
    _, _, minutes = labelled(t)
    assert 7 < np.median(minutes) < 20 and minutes.min() > 1 and minutes.max() < schema.MAX_DURATION_S / 60
    assert (schema.failed_rule(t, DAY) == None).all()  # noqa: E711 - a clean ride breaks no rule


@pytest.mark.parametrize("dirty_share", [0.03, 0.2])
def test_every_dirty_kind_is_made_at_the_share_and_caught_by_its_rule(dirty_share):
    rows = 6000
    failed = schema.failed_rule(generate_day(DAY, rows, seed=9, dirty_share=dirty_share), DAY)
    n_dirty = round(rows * dirty_share)
    expected = collections.Counter(DIRTY_RULE[DIRTY_KINDS[j % len(DIRTY_KINDS)]] for j in range(n_dirty))
    assert collections.Counter(failed[failed != None]) == expected  # noqa: E711
    assert sum(expected.values()) == n_dirty and set(expected) == set(DIRTY_RULE.values())
    assert set(DIRTY_RULE.values()) <= set(schema.RULE_NAMES) and len(set(DIRTY_RULE.values())) == len(DIRTY_RULE)


@pytest.mark.parametrize("day", [DAY, dt.date(2024, 6, 8)])  # a Wednesday, a Saturday
def test_the_overtime_rate_is_realistic(day):
    y, f, _ = labelled(clean(day))
    assert 0.05 <= y.mean() <= 0.20, y.mean()
    member = f["is_member"] == 1.0
    # Casual riders (30 min included, longer rides) run over far more often than members (45 min).
    assert y[~member].mean() > 5 * y[member].mean() and y[member].mean() < 0.05
    # E-bikes are faster: fewer of their rides run over.
    electric = f["is_electric"] == 1.0
    assert y[electric].mean() < 0.8 * y[~electric].mean()


def test_a_station_hour_baseline_beats_the_global_rate_on_a_held_out_day():
    train = [labelled(clean(DAY + dt.timedelta(days=i))) for i in (-2, -1, 0)]  # Monday to Wednesday
    y = np.concatenate([t[0] for t in train])
    f = {name: np.concatenate([t[1][name] for t in train]) for name in ("start_station", "station_hour",
                                                                        "station_rider")}
    y_test, f_test, _ = labelled(clean(DAY + dt.timedelta(days=1), seed=8))  # Thursday, another seed
    overall = float(y.mean())
    by_station = rates(f["start_station"], y, overall, m=20)
    station_prior = np.array([by_station[s] for s in f["start_station"].tolist()])
    by_station_hour = rates(f["station_hour"], y, station_prior, m=20)
    by_station_rider = rates(f["station_rider"], y, overall, m=20)

    def predict(table: dict[int, float], keys: np.ndarray, fallback: np.ndarray | float) -> np.ndarray:
        fb = np.broadcast_to(fallback, keys.shape)
        return np.array([table.get(k, b) for k, b in zip(keys.tolist(), fb.tolist(), strict=True)])

    test_station = predict(by_station, f_test["start_station"], overall)
    global_loss = log_loss(y_test, np.full(len(y_test), overall))
    station_hour_loss = log_loss(y_test, predict(by_station_hour, f_test["station_hour"], test_station))
    station_rider_loss = log_loss(y_test, predict(by_station_rider, f_test["station_rider"], overall))
    assert station_hour_loss < 0.95 * global_loss, (station_hour_loss, global_loss)
    # The rider carries most of the signal: with the station, it beats the station and hour by far.
    assert station_rider_loss < 0.8 * station_hour_loss, (station_rider_loss, station_hour_loss)


def test_the_shift_is_a_tourist_season_heat_wave():
    y0, f0, m0 = labelled(clean(DAY))
    y1, f1, m1 = labelled(clean(DAY, shift=True))
    tourist_ids = set(stations.load().ids[stations.load().tourist].tolist())
    at_tourist = lambda t: np.isin(t.column("start_station_id").to_numpy(zero_copy_only=False),  # noqa: E731
                                   list(tourist_ids))
    t0, t1 = at_tourist(clean(DAY)), at_tourist(clean(DAY, shift=True))
    assert t1.mean() > 1.5 * t0.mean()  # more rides from the tourist docks
    assert (f1["is_member"][t1] == 0).mean() > (f0["is_member"][t0] == 0).mean() + 0.1  # and more of them casual
    assert np.median(m1[f1["is_member"] == 1]) > 1.15 * np.median(m0[f0["is_member"] == 1])  # everyone slower
    assert y1.mean() > 1.5 * y0.mean()
    # A pattern object is accepted; the drift scenario's equals shift=True.
    assert generate_day(DAY, 500, shift=RidePattern().shifted()).equals(generate_day(DAY, 500, shift=True))
    assert not generate_day(DAY, 500, shift=RidePattern(slowdown=2.0)).equals(generate_day(DAY, 500))


def test_generate_writes_day_partitions_and_never_overwrites(tmp_path):
    from core.settings import Settings

    lines: list[str] = []
    uris = generate(Settings(), DAY, 2, 300, seed=1, lake_root=f"file://{tmp_path}", echo=lines.append)
    assert [u.rsplit("/", 2)[1] for u in uris] == ["start_date=2024-06-05", "start_date=2024-06-06"]
    assert all(f"{tmp_path}/raw/bike/" in u for u in uris) and all("written" in line for line in lines)
    first = pq.read_table(uris[0].removeprefix("file://"))
    assert first.schema.equals(schema.RAW_SCHEMA) and first.equals(generate_day(DAY, 300, seed=1))
    again: list[str] = []
    assert generate(Settings(), DAY, 1, 300, seed=1, lake_root=f"file://{tmp_path}", echo=again.append) == uris[:1]
    assert "exists, kept" in again[0]


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rows"):
        generate_day(DAY, 0)
    with pytest.raises(ValueError, match="dirty_share"):
        generate_day(DAY, 10, dirty_share=0.5)
