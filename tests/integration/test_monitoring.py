"""Monitoring on the real stack: shifted live traffic breaches drift, the monitoring DAG marks the drift
asset through Airflow, and that schedules a batch_training run."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse

import numpy as np
import pytest
from sqlalchemy import text

from batch import evaluate, train
from core.db import engine
from core.model import ModelConfig, WideAndDeep
from core.registry import Artifact, Registry
from serving import monitor
from tests.airflow_api import AirflowAPI
from workloads.taxi import features
from workloads.taxi.features import spec_version
from workloads.taxi.generate import generate_day

pytestmark = pytest.mark.integration


def _trips(day: dt.date, rows: int, seed: int, shift: bool):
    t = generate_day(day, rows, seed=seed, dirty_share=0.0, shift=shift).to_pandas()
    return t.rename(columns={"tpep_pickup_datetime": "pickup_ts", "tpep_dropoff_datetime": "dropoff_ts"})


def _inputs(t) -> dict[str, np.ndarray]:
    return {"pickup_ts": t["pickup_ts"].to_numpy().astype("datetime64[us]"),
            "PULocationID": t["PULocationID"].to_numpy(dtype="float64"),
            "DOLocationID": t["DOLocationID"].to_numpy(dtype="float64"),
            "passenger_count": t["passenger_count"].to_numpy(dtype="float64", na_value=np.nan),
            "trip_distance": t["trip_distance"].to_numpy()}


@pytest.fixture
def drift_model(stack, settings, unique):
    """A production version of a private model name whose training statistics come from normal traffic."""
    name = f"it_drift_{unique}"
    cols = features.compute_numpy(_inputs(_trips(dt.date(2026, 3, 2), 20000, 1, shift=False)))
    cols["duration_s"] = np.ones(20000)
    config = ModelConfig(widths={"zone": 4, "time": 2}, hidden=[8])
    artifact = Artifact(WideAndDeep(config).state_dict(), config.to_dict(), spec_version(),
                        feature_stats=evaluate.feature_stats(train.Split(cols)))
    registry = Registry(settings)
    mv = registry.register(name, artifact, {"test": True}, [])
    registry.update_metrics(name, mv.version, {"test": {"model": {"mae_s": 250.0}}})
    registry.promote(name, mv.version)
    yield name, mv.version
    eng = engine(settings)
    with eng.begin() as conn:
        for table in ("trip_outcomes", "predictions_recent"):
            conn.execute(text(f"DELETE FROM {table} WHERE trip_id LIKE :p"), {"p": f"itdrift-{unique}-%"})
        conn.execute(text("DELETE FROM drift_reports WHERE model_version = :v"), {"v": mv.version})
        conn.execute(text("DELETE FROM model_versions WHERE name = :n"), {"n": name})
    eng.dispose()


def _load_live(settings, unique: str, version: str, t, now: dt.datetime) -> None:
    scored = now - dt.timedelta(minutes=5)
    preds = [{"trip_id": f"itdrift-{unique}-{i}", "v": version, "pu": int(r.PULocationID), "do": int(r.DOLocationID),
              "pax": None if np.isnan(r.passenger_count) else int(r.passenger_count), "dist": float(r.trip_distance),
              "pickup": r.pickup_ts.to_pydatetime(), "pred": 600.0, "scored": scored}
             for i, r in enumerate(t.itertuples())]
    outcomes = [{"trip_id": p["trip_id"], "dropoff": r.dropoff_ts.to_pydatetime(),
                 "d": (r.dropoff_ts - r.pickup_ts).total_seconds()} for p, r in zip(preds, t.itertuples())]
    eng = engine(settings)
    with eng.begin() as conn:
        for table in ("trip_outcomes", "predictions_recent"):
            conn.execute(text(f"DELETE FROM {table} WHERE trip_id LIKE :p"), {"p": f"itdrift-{unique}-%"})
        conn.execute(text(
            "INSERT INTO predictions_recent (trip_id, model_version, pu_location_id, do_location_id, passenger_count, "
            "trip_distance, pickup_ts, predicted_duration_s, scored_ts) "
            "VALUES (:trip_id, :v, :pu, :do, :pax, :dist, :pickup, :pred, :scored)"), preds)
        conn.execute(text("INSERT INTO trip_outcomes (trip_id, dropoff_ts, duration_s) VALUES (:trip_id, :dropoff, :d)"),
                     outcomes)
    eng.dispose()


def test_shifted_traffic_triggers_retraining_through_the_drift_asset(settings, drift_model, unique):
    name, version = drift_model
    now = dt.datetime.now(dt.UTC)
    rows = settings.monitoring.min_rows + 100

    # Normal traffic, with outcomes close to the predictions: no verdict of drift.
    normal = _trips(dt.date(2026, 3, 3), rows, 2, shift=False)
    _load_live(settings, unique, version, normal, now)
    calm = monitor.check(settings, name=name)
    assert calm is not None and calm.rows == rows and not any(
        "PSI" in r for r in calm.reasons), calm.summary()

    # The generator's shifted traffic: more airport runs and slower trips.
    shifted = _trips(dt.date(2026, 3, 3), rows, 2, shift=True)
    _load_live(settings, unique, version, shifted, now)

    api = AirflowAPI(settings)
    api.wait_for_dag("batch_training")
    was_paused = api.call("GET", "/api/v2/dags/batch_training")["is_paused"]
    api.call("PATCH", "/api/v2/dags/batch_training", {"is_paused": False})
    started = dt.datetime.now(dt.UTC)
    try:
        run = api.run_dag("monitoring", conf={"model_name": name}, timeout=300)
        assert run["state"] == "success", api.failed_tasks("monitoring", run["dag_run_id"])
        tis = api.call("GET", f"/api/v2/dags/monitoring/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
                              "/taskInstances")["task_instances"]
        assert {t["task_id"]: t["state"] for t in tis}["mark_drift"] == "success"

        eng = engine(settings)
        with eng.connect() as conn:
            reports = conn.execute(text("SELECT feature, psi, breached, live_mae_s FROM drift_reports "
                                        "WHERE model_version = :v"), {"v": version}).mappings().all()
        eng.dispose()
        assert reports and all(r["breached"] for r in reports)
        assert max(r["psi"] for r in reports) >= settings.monitoring.psi_threshold

        triggered = None
        deadline = time.monotonic() + 90
        while triggered is None and time.monotonic() < deadline:
            runs = api.call("GET", "/api/v2/dags/batch_training/dagRuns?run_type=asset_triggered"
                                   "&order_by=-run_after&limit=5")["dag_runs"]
            triggered = next((r for r in runs if dt.datetime.fromisoformat(r["run_after"]) >= started), None)
            time.sleep(3)
        assert triggered is not None, "the drift asset did not schedule batch_training"
    finally:
        # Stop what this test scheduled: a real retraining is the e2e test's job.
        runs = api.call("GET", "/api/v2/dags/batch_training/dagRuns?order_by=-run_after&limit=10")["dag_runs"]
        for r in runs:
            if dt.datetime.fromisoformat(r["run_after"]) >= started and r["state"] in ("queued", "running"):
                api.call("PATCH", f"/api/v2/dags/batch_training/dagRuns/{urllib.parse.quote(r['dag_run_id'], safe='')}",
                         {"state": "failed"})
        api.call("PATCH", "/api/v2/dags/batch_training", {"is_paused": was_paused})


def test_bike_monitoring_reads_its_own_views_and_judges_by_log_loss(stack, settings, unique):
    """The monitor of another workload: its inputs come from its own predictions table (bike_predictions, by the
    columns its contract derives), its features from its own folder, and its live error is its gate metric (log
    loss over the rides whose outcome arrived, the label derived in SQL from the duration and the rider)."""
    from core.task import log_loss
    from core.workload import load, module
    from tests.model_factory import artifact_bytes
    from workloads.bike.schema import overtime_numpy

    wl = load("bike")
    rides = module("bike", "generate").generate_day(dt.date(2026, 6, 3), 400, seed=5, dirty_share=0.0).to_pandas()
    inputs = {"started_at": rides["started_at"].to_numpy().astype("datetime64[us]"),
              **{c: rides[c].to_numpy(dtype=object) for c in ("start_station_id", "rideable_type", "member_casual")}}
    cols = wl.features.compute_numpy(inputs)
    cols[wl.label] = np.zeros(len(rides))
    artifact = Artifact.from_bytes(artifact_bytes(3, workload="bike"))
    artifact.feature_stats = evaluate.feature_stats(train.Split(cols, wl))
    name = f"it_bike_drift_{unique}"
    registry = Registry(settings)
    mv = registry.register(name, artifact, {"test": True}, [])
    registry.update_metrics(name, mv.version, {"test": {"model": {"log_loss": 0.2}}})
    registry.promote(name, mv.version)

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    rng = np.random.default_rng(1)
    probability = rng.uniform(0.05, 0.95, len(rides))
    duration = (rides["ended_at"] - rides["started_at"]).dt.total_seconds().to_numpy()
    prefix = f"itbike-{unique}-"
    eng = engine(settings)
    try:
        with eng.begin() as conn:
            conn.execute(text(
                "INSERT INTO bike_predictions (ride_id, model_version, started_at, start_station_id, rideable_type,"
                " member_casual, overtime_probability, scored_ts) VALUES (:id, :v, :t, :s, :r, :m, :p, :scored)"),
                [{"id": f"{prefix}{i}", "v": mv.version, "t": r.started_at.to_pydatetime(), "s": r.start_station_id,
                  "r": r.rideable_type, "m": r.member_casual, "p": float(probability[i]),
                  "scored": now - dt.timedelta(minutes=5)} for i, r in enumerate(rides.itertuples())])
            conn.execute(text("INSERT INTO bike_outcomes (ride_id, ended_at, duration_s) VALUES (:id, :t, :d)"),
                         [{"id": f"{prefix}{i}", "t": r.ended_at.to_pydatetime(), "d": float(duration[i])}
                          for i, r in enumerate(rides.itertuples()) if i % 2 == 0])
        verdict = monitor.check(settings, name=name, workload="bike", now=now)
        assert verdict is not None and verdict.metric == "log_loss" and verdict.test_mae_s == 0.2
        assert verdict.rows == len(rides) and verdict.completed == (len(rides) + 1) // 2
        done = np.arange(len(rides)) % 2 == 0
        labels = overtime_numpy(duration[done], rides["member_casual"].to_numpy()[done])
        assert verdict.live_mae_s == pytest.approx(log_loss(labels, probability[done]), rel=1e-9)
        assert set(verdict.psi) <= {f.name for f in wl.features.FEATURES} and "start_station" in verdict.psi
        assert max(verdict.psi.values()) < settings.monitoring.psi_threshold  # the training day's own traffic
    finally:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM bike_outcomes WHERE ride_id LIKE :p"), {"p": prefix + "%"})
            conn.execute(text("DELETE FROM bike_predictions WHERE ride_id LIKE :p"), {"p": prefix + "%"})
            conn.execute(text("DELETE FROM drift_reports WHERE model_version = :v"), {"v": mv.version})
            conn.execute(text("DELETE FROM model_versions WHERE name = :n"), {"n": name})
        eng.dispose()
