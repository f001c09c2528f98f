"""The bike workload's batch loop on the running stack, triggered through Airflow as a user would: its own DAG
(``bike_batch_training``) validates its raw partitions (``start_date=``) with its rules, trains a classifier,
judges it by log loss against its station-hour baseline, registers it under its own model name, and records the
run in MySQL and Hive; the taxi model is not touched."""

from __future__ import annotations

import datetime as dt

import pytest

from core import hive
from core.registry import Registry
from core.workload import load
from tests.e2e.training import train
from workloads.bike import generate

START, DAYS, ROWS, DIRTY = dt.date(2024, 6, 3), 3, 4000, 0.03
BIKE = load("bike")


@pytest.fixture(scope="module")
def bike_run(stack, settings):
    generate.generate(settings, START, DAYS, ROWS, seed=12, dirty_share=DIRTY, echo=lambda _: None)
    taxi = Registry(settings).production(load("taxi").model_name)
    end = START + dt.timedelta(days=DAYS - 1)
    run = train(settings, {"start_date": START.isoformat(), "end_date": end.isoformat()},
                dag_id=BIKE.dag_id("batch_training"))
    return {**run, "taxi_before": taxi.version if taxi else None}


def test_the_bike_model_is_a_classifier_that_beats_its_baseline(bike_run, settings):
    registry = Registry(settings)
    mv = registry.get(BIKE.model_name, bike_run["version"])
    assert registry.load(mv).build_model(BIKE) is not None
    assert mv.data_partitions == [BIKE.partition_path(START + dt.timedelta(days=i)) for i in range(DAYS)]
    model, base = bike_run["test"]["model"], bike_run["test"]["baseline"]
    assert set(model) == set(base) == {"log_loss", "roc_auc", "brier"}
    assert model["log_loss"] < base["log_loss"] and model["roc_auc"] > base["roc_auc"], (model, base)
    assert "val_log_loss" in mv.metrics


def test_the_taxi_model_is_untouched(bike_run, settings):
    taxi = Registry(settings).production(load("taxi").model_name)
    assert (taxi.version if taxi else None) == bike_run["taxi_before"]


def test_analysts_read_the_bike_run_and_its_metrics_in_hive(bike_run, settings):
    conn = hive.connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT model_name, model_version, rows_in, quarantined, test_mae_s FROM lake.training_runs "
                    "WHERE run_id = %(r)s", {"r": bike_run["run_id"]})
        assert cur.fetchall() == [(BIKE.model_name, bike_run["version"], DAYS * ROWS, DAYS * round(ROWS * DIRTY),
                                   None)]
        cur.execute("SELECT evaluated, metric FROM lake.model_metrics WHERE run_id = %(r)s", {"r": bike_run["run_id"]})
        assert {("model", "log_loss"), ("baseline", "log_loss"), ("model", "roc_auc")} <= set(cur.fetchall())
    finally:
        conn.close()
