"""The real-time views a workload's contract and ``Views`` declaration derive: names, types and statements."""

from __future__ import annotations

import dataclasses

import pytest

from core import contract
from core.views import RealTimeViews, Views, sql_type
from core.workload import load

TAXI, BIKE = load("taxi"), load("bike")


def test_taxi_keeps_the_names_its_views_had_before_workloads():
    v = RealTimeViews(TAXI)
    assert (v.predictions, v.outcomes, v.hourly) == ("predictions_recent", "trip_outcomes", "zone_hour_stats")
    assert (v.key, v.time, v.group, v.prediction, v.actual) == ("trip_id", "pickup_ts", "pu_location_id",
                                                                 "predicted_duration_s", "actual_duration_s")
    assert (v.count, v.sum_predicted, v.sum_actual, v.sum_loss) == ("trips", "sum_predicted_s", "sum_actual_s",
                                                                     "sum_abs_error_s")
    assert v.loss_sql == "ABS(p.actual_duration_s - p.predicted_duration_s)"


def test_a_workload_that_renames_nothing_gets_names_from_its_own():
    v = RealTimeViews(BIKE)
    assert (v.predictions, v.outcomes, v.hourly) == ("bike_predictions", "bike_outcomes", "bike_hourly")
    assert (v.key, v.time, v.group, v.prediction, v.actual, v.count) == (
        "ride_id", "started_at", "start_station_id", "overtime_probability", "actual_overtime", "rides")
    assert "LN(" in v.loss_sql and "p.actual_overtime" in v.loss_sql  # the log loss of a binary task
    names = [c.name for c in v.prediction_columns]
    assert names == ["ride_id", "model_version", "started_at", "start_station_id", "rideable_type", "member_casual",
                     "overtime_probability", "scored_ts", "event_ts"]


def test_column_types_follow_the_fields_kind_and_range():
    assert sql_type(contract.key("k", 64)) == "VARCHAR(64)"
    assert sql_type(contract.integer("z", 1, 263, recorded=(1, 265))) == "SMALLINT"
    assert sql_type(contract.integer("n", 0, 100_000)) == "INT"
    assert sql_type(contract.integer("v", 0, 2**31)) == "BIGINT"
    assert sql_type(contract.number("d", 0, 1)) == "DOUBLE"
    assert sql_type(contract.category("c", ("member", "casual"))) == "VARCHAR(6)"
    assert sql_type(contract.timestamp("t")) == "DATETIME(3)"


def test_every_statement_is_filled_for_every_workload():
    for wl in (TAXI, BIKE):
        v = RealTimeViews(wl)
        for statement in [*v.ddl(), *(v.statement(name) for name in (
                "sync_upsert_predictions", "sync_upsert_outcomes", "sync_fill_actuals", "sync_recompute_hourly",
                "sync_delete_empty_hours", "sync_hour_keys_create", "sync_hour_keys_add", "sync_hour_keys_of_keys"))]:
            assert "{" not in statement and "}" not in statement, statement


def test_a_bad_declaration_is_refused_with_what_to_change():
    with pytest.raises(ValueError, match="renames unknown columns"):
        RealTimeViews(dataclasses.replace(BIKE, views=dataclasses.replace(BIKE.views, columns=(("nope", "x"),))))
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        RealTimeViews(dataclasses.replace(BIKE, views=dataclasses.replace(BIKE.views, hourly="bike hourly")))
    with pytest.raises(KeyError, match="no field"):
        RealTimeViews(dataclasses.replace(BIKE, views=Views(group="end_station_id", label="0")))


def test_settings_rename_a_workloads_tables_by_role():
    from core import views
    from core.settings import Settings

    s = Settings(serving={"workload_tables": {"bike": {"hourly": "bike_station_hours"}}})
    v = views.of(BIKE, s)
    assert (v.predictions, v.hourly) == ("bike_predictions", "bike_station_hours")
    assert "INSERT INTO bike_station_hours" in v.statement("sync_recompute_hourly")
    assert views.of(TAXI, s).hourly == "zone_hour_stats"
    with pytest.raises(ValueError, match="unknown roles"):
        views.of(BIKE, Settings(serving={"workload_tables": {"bike": {"stats": "x"}}}))
