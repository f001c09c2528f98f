"""Drift statistics on generated traffic: the generator's --shift must show, normal traffic must not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from batch import evaluate, train
from core.settings import Settings
from serving.monitor import Verdict, feature_psi, judge, live_histogram, psi
from workloads.taxi import features
from workloads.taxi.generate import generate_day


def inputs(day: dt.date, rows: int, seed: int, shift: bool = False) -> dict[str, np.ndarray]:
    t = generate_day(day, rows, seed=seed, dirty_share=0.0, shift=shift).to_pandas()
    return {
        "pickup_ts": t["tpep_pickup_datetime"].to_numpy().astype("datetime64[us]"),
        "PULocationID": t["PULocationID"].to_numpy(dtype="float64"),
        "DOLocationID": t["DOLocationID"].to_numpy(dtype="float64"),
        "passenger_count": t["passenger_count"].to_numpy(dtype="float64", na_value=np.nan),
        "trip_distance": t["trip_distance"].to_numpy(),
    }


@pytest.fixture(scope="module")
def training_stats() -> dict:
    cols = features.compute_numpy(inputs(dt.date(2026, 3, 2), 20000, 1))
    cols["duration_s"] = np.ones(20000)
    return evaluate.feature_stats(train.Split(cols))


def test_psi_basics():
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    assert psi(np.array([50, 50]), np.array([90, 10])) > 0.2
    assert psi(np.array([0, 0]), np.array([1, 2])) == 0.0
    np.testing.assert_array_equal(live_histogram(np.array([-5.0, 0.5, 99.0]), [0.0, 1.0, 2.0]), [2, 1])


def test_same_traffic_does_not_drift_but_shifted_traffic_does(training_stats):
    same = feature_psi(training_stats, inputs(dt.date(2026, 3, 3), 3000, 2))
    shifted = feature_psi(training_stats, inputs(dt.date(2026, 3, 3), 3000, 2, shift=True))
    threshold = Settings().monitoring.psi_threshold
    assert max(same.values()) < threshold, same
    assert max(shifted.values()) >= threshold, shifted
    assert shifted["is_airport"] > same["is_airport"] * 5


def test_judge_needs_enough_data_and_names_the_reason():
    s = Settings(monitoring={"min_rows": 100, "min_completed": 10, "psi_threshold": 0.2, "mae_ratio_threshold": 1.5})
    now = dt.datetime(2026, 3, 3)
    v = judge(s, Verdict("v", now, now, rows=50, completed=5, psi={"is_airport": 0.9}, live_mae_s=900,
                         test_mae_s=300))
    assert not v.breached  # too little data for either signal
    v = judge(s, Verdict("v", now, now, rows=500, completed=50, psi={"is_airport": 0.9, "hour": 0.01},
                         live_mae_s=600, test_mae_s=300))
    assert v.breached and v.reasons[0].startswith("PSI of is_airport") and "live MAE" in v.reasons[1]
    v = judge(s, Verdict("v", now, now, rows=500, completed=50, psi={"hour": 0.05}, live_mae_s=310, test_mae_s=300))
    assert not v.breached and v.summary()["max_psi_feature"] == "hour"


def test_judge_names_the_gate_metric_of_a_classifier():
    s = Settings(monitoring={"min_rows": 10, "min_completed": 10, "psi_threshold": 0.2, "mae_ratio_threshold": 1.5})
    now = dt.datetime(2026, 3, 3)
    v = judge(s, Verdict("v", now, now, rows=50, completed=50, live_mae_s=0.41, test_mae_s=0.2, metric="log_loss"))
    assert v.reasons == ["live log_loss 0.41 is 2.05x the test log_loss 0.2 (threshold 1.5x)"]
    assert v.summary()["metric"] == "log_loss"


def test_live_inputs_are_the_stored_fields_by_name_as_the_features_read_them():
    from core.workload import load
    from serving.monitor import live_inputs

    bike = load("bike")
    rows = [{"ride_id": "r", "started_at": dt.datetime(2026, 6, 3, 8, 15), "start_station_id": "6140.05",
             "rideable_type": "classic_bike", "member_casual": "member"}]
    inputs = live_inputs(bike, rows)
    assert list(inputs) == ["started_at", "start_station_id", "rideable_type", "member_casual"]
    assert inputs["started_at"].dtype == np.dtype("datetime64[us]") and inputs["member_casual"][0] == "member"
    assert set(bike.features.compute_numpy(inputs)) >= {"start_station", "hour", "is_member"}
    taxi = live_inputs(load("taxi"), [{"pickup_ts": dt.datetime(2026, 3, 3, 9), "pu_location_id": 132,
                                       "do_location_id": 236, "passenger_count": None, "trip_distance": 17.3}])
    assert np.isnan(taxi["passenger_count"][0]) and taxi["PULocationID"][0] == 132.0
