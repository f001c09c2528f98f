"""The demo's "where to look" block: every address from the settings, and no configured secret."""

from __future__ import annotations

from pydantic import SecretStr

from core.settings import Settings
from deploy.local.demo import where_to_look


def test_where_to_look_shows_local_defaults_and_addresses():
    s = Settings()
    text = where_to_look(s)
    assert f"login {s.airflow.admin_user} / admin" in text and s.speed.url in text and s.kafka.bootstrap in text
    assert f"-p{s.mysql.analyst_password.get_secret_value()}" in text
    # Hive logs in as the analyst too: the Thrift Server refuses anonymous logins.
    assert f"auth='CUSTOM', username='{s.mysql.analyst_user}', password='analyst-dev'" in text
    assert f"-n {s.mysql.analyst_user} -p analyst-dev" in text


def test_where_to_look_never_prints_a_configured_password():
    s = Settings(airflow={"admin_password": SecretStr("airflow-s3cret")},
                 mysql={"analyst_password": SecretStr("analyst-s3cret")})
    text = where_to_look(s)
    assert "s3cret" not in text
    assert "$LAMBDAML_AIRFLOW__ADMIN_PASSWORD" in text and "$LAMBDAML_MYSQL__ANALYST_PASSWORD" in text


# ------------------------------------------------------------------------------------------- the report
from deploy.local.demo import compare_on_one_split, live_error, replay_stem, report_text  # noqa: E402

OLD = "trip_duration:1.0.0-20261201T2011-9fef42e"
NEW = "trip_duration:1.1.0-20261201T2020-9fef42e"


def figures() -> dict:
    """What ``Demo.collect`` reads back after a run with the shift: two versions, the newest promoted."""
    shifted = ["2026-11-28", "2026-11-29", "2026-11-30"]
    return {
        "models": [  # newest first, as the registry lists them
            {"version": NEW, "stage": "production", "data_partitions": [f"raw/trips/pickup_date={d}" for d in shifted],
             "metrics": {"test": {"model": {"mae_s": 558.0}, "baseline": {"mae_s": 1020.0},
                                  "champion": {"mae_s": 801.0}},
                         "champion_version": OLD, "decision": "beats the baseline by 45.3% and the champion by 30.3%"}},
            {"version": OLD, "stage": "archived",
             "data_partitions": [f"raw/trips/pickup_date=2026-11-2{d}" for d in (5, 6, 7)],
             "metrics": {"test": {"model": {"mae_s": 232.0}, "baseline": {"mae_s": 671.0}, "champion": None},
                         "champion_version": None, "decision": "beats the baseline by 65.4%; no champion yet"}},
        ],
        "shifted_days": shifted,
        "live": live_error([
            {"stem": "20261127-101", "model_version": OLD, "completed": 1800, "mae_s": 300.0},
            {"stem": "20261130-101-shift", "model_version": OLD, "completed": 1800, "mae_s": 822.0},
            {"stem": "20261130-102-shift", "model_version": NEW, "completed": 1800, "mae_s": 570.0},
            {"stem": "20261101-7", "model_version": OLD, "completed": 50, "mae_s": 1.0},  # another replay
        ], {"20261127-101": "normal traffic", "20261130-101-shift": "shifted, before the swap",
            "20261130-102-shift": "shifted, after the swap"}),
        "now": {"service": NEW, "stream_last": {"batch_id": 812, "rows": 40, "model_versions": [NEW]},
                "stream_ts": "2026-12-01T20:31:00+00:00"},
        "endpoint": {"requests": 300, "p50_ms": 9.8, "p99_ms": 23.4},
        "stream": {"predictions": 5400, "p50_ms": 2107.0, "p99_ms": 22700.0, "dead_letters": 54},
        "drift": {"reasons": ["PSI of is_airport is 0.501 (threshold 0.2)"]},
        "swap": {"before": OLD, "after": NEW, "retrain_run": "asset_triggered__x", "retrain_state": "success"},
        "mysql": {"predictions_recent": 5400}, "hive": {"trips": 7760},
    }


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_versions_are_compared_on_the_newest_split_and_the_report_says_which():
    text = report_text(figures(), "trips.predictions", "trips.dlq")
    block = section(text, "Model versions on one test split")
    assert f"split: the test split of {NEW}" in block[1]
    assert "pickup days 2026-11-28 .. 2026-11-30 (the shifted traffic)" in block[1]
    new_row = next(line for line in block if line.strip().startswith("production"))
    old_row = next(line for line in block if line.strip().startswith("archived"))
    # Both figures come from the newest version's evaluation: the old model scored on the new split.
    assert "MAE    558" in new_row and "MAE    801" in old_row and "MAE    232" not in old_row
    assert "45% better than the baseline" in new_row and "21% better than the baseline" in old_row
    assert any(line.strip().startswith("baseline") and "1020" in line for line in block)
    assert any("the newest is 30% better than " + OLD in line for line in block)
    assert any("promotion decision: beats the baseline by 45.3%" in line for line in block)
    # Their own-split figures are shown apart, said to be on other days.
    own = block[block.index(next(line for line in block if "each version on its own test split" in line)):]
    assert any(OLD in line and "MAE    232" in line and "days 2026-11-25 .. 2026-11-27" in line for line in own)


def test_live_error_per_phase_and_version_and_what_scores_now():
    text = report_text(figures(), "trips.predictions", "trips.dlq")
    live = section(text, "Live error per traffic phase and model version")[1:]
    assert [(line.split(OLD)[0].split(NEW)[0].strip(), OLD in line) for line in live] == [
        ("normal traffic", True), ("shifted, before the swap", True), ("shifted, after the swap", False)]
    assert "MAE 570s" in live[2] and NEW in live[2]
    now = section(text, "Scoring now")
    assert NEW in now[1] and "/v1/models/current" in now[1]
    assert "last batch (#812, 40 rows" in now[2] and now[2].endswith(NEW) and len(now) == 3


def test_a_stream_that_has_not_scored_since_the_swap_is_said_so():
    r = figures()
    r["now"]["stream_last"]["model_versions"] = [OLD]
    now = section(report_text(r, "trips.predictions", "trips.dlq"), "Scoring now")
    assert now[2].endswith(OLD) and "scored nothing since the swap" in now[3]


def test_one_version_without_a_champion():
    r = figures()
    r["models"] = r["models"][1:]
    cmp = compare_on_one_split(r["models"])
    assert cmp is not None and [row["version"] for row in cmp["rows"]] == [OLD] and cmp["not_on_split"] == []
    block = section(report_text(r, "p", "d"), "Model versions on one test split")
    assert "(the shifted traffic)" not in block[1] and not any("own test split" in line for line in block)
    assert any("no champion yet" in line for line in block)


def test_an_older_version_not_scored_on_the_newest_split_is_listed_apart():
    r = figures()
    third = {"version": "trip_duration:1.2.0-x", "stage": "candidate", "data_partitions": [],
             "metrics": {"test": {"model": {"mae_s": 500.0}, "baseline": {"mae_s": 1000.0},
                                  "champion": {"mae_s": 558.0}},
                         "champion_version": NEW, "decision": "worse than the champion by 1.0%"}}
    cmp = compare_on_one_split([third, *r["models"]])
    assert cmp is not None and [row["version"] for row in cmp["rows"]] == ["trip_duration:1.2.0-x", NEW]
    assert cmp["not_on_split"] == [OLD]


def test_replay_stem_matches_the_replay_trip_ids():
    import datetime as dt

    from batch.replay import plan_day

    day = dt.date(2026, 11, 30)
    plan = plan_day(day, 5, 102, True)
    assert plan.key(0).rsplit("-", 1)[0] == replay_stem(day, 102, True) == "20261130-102-shift"
    assert plan_day(day, 5, 101, False).key(0).rsplit("-", 1)[0] == replay_stem(day, 101, False)


def test_the_first_training_window_holds_a_weekday_before_a_weekday_it_ends_on():
    import datetime as dt

    from deploy.local.demo import first_window

    monday, saturday, wednesday = dt.date(2026, 11, 30), dt.date(2026, 11, 28), dt.date(2026, 12, 2)
    assert first_window(monday, 3) == 4  # Saturday, Sunday, Monday: the Friday before is added
    assert first_window(monday, 2) == 4
    assert first_window(wednesday, 3) == 3 and first_window(saturday, 3) == 3  # a weekend last day needs nothing
    assert first_window(dt.date(2026, 12, 1), 3) == 3  # Sunday, Monday, Tuesday: Monday is a weekday


def test_the_bike_workload_has_its_own_section_with_log_loss_against_its_baseline():
    r = figures()
    r["bike"] = {
        "requests": 200, "p50_ms": 7.1, "p99_ms": 15.0, "produced": 300,
        "models": [{"version": "bike_overtime:1.0.0-x", "stage": "production", "data_partitions": [],
                    "metrics": {"test": {"model": {"log_loss": 0.158, "roc_auc": 0.921, "brier": 0.047},
                                         "baseline": {"log_loss": 0.233, "roc_auc": 0.725, "brier": 0.061}},
                                "decision": "beats the baseline by 32.2%; no champion yet"}}],
        "stream": {"topic": "bike.predictions", "dlq": "bike.dlq", "predictions": 300, "mean_probability": 0.081,
                   "dead_letters": 3},
        "live": {"table": "bike_predictions", "hourly": "bike_hourly", "completed": 300, "log_loss": 0.171,
                 "roc_auc": 0.904, "hourly_log_loss": 0.171}}
    block = section(report_text(r, "trips.predictions", "trips.dlq"), "Bike overtime")
    text = "\n".join(block)
    assert "log loss 0.158" in text and "ROC AUC 0.921" in text and "32% better than the baseline" in text
    assert "log loss 0.233" in text and "beats the baseline by 32.2%" in text
    assert "300 predictions on bike.predictions" in text and "3 dead letters on bike.dlq" in text
    assert "POST /v1/bike/predict, 200 sequential requests: p50 7.1 ms" in text
    assert "300 rides with their outcome in MySQL bike_predictions: log loss 0.171, ROC AUC 0.904" in text
    assert "Bike overtime" not in report_text(figures(), "trips.predictions", "trips.dlq")  # only when it ran


def test_the_report_shows_the_master_log_reconciled_with_kafka_hive_and_mysql():
    from deploy.local.demo import reconciled_text

    counts = {"predictions": 1800, "completed": 1650}
    rec = {"topics": [{"topic": "trips.requests", "day": "2026-12-04", "kafka": 5400, "master": 5400, "verdict": "ok"},
                      {"topic": "trips.dlq", "day": "2026-12-04", "kafka": 0, "master": 0, "verdict": "ok"}],
           "views": [{"day": "2026-12-03", "master": counts, "hive": counts, "mysql": counts, "verdict": "ok"},
                     {"day": "2026-12-02", "master": counts, "hive": None, "mysql": counts,
                      "verdict": "not in Hive yet (hive_archive has not run for it)"}]}
    lines = reconciled_text(rec)
    assert any("trips.requests" in line and "Kafka    5400" in line and "master    5400" in line for line in lines)
    assert not any("trips.dlq" in line for line in lines)  # a topic with nothing that day is left out
    assert any("2026-12-03" in line and line.count("1800/1650") == 3 and line.endswith("ok") for line in lines)
    assert any("2026-12-02" in line and "Hive           -" in line for line in lines)
    assert reconciled_text(None) == []
