"""Reconciliation's verdicts and tables, the daily slot of the monitoring DAG's reconciliation, and the `views`
commands' checks of their arguments."""

from __future__ import annotations

import datetime as dt

from typer.testing import CliRunner

from core.cli import app
from core.schedules import in_daily_slot
from serving.archive import DayCounts
from serving.reconcile import Reconciliation, TopicDay, ViewDay

D = dt.date(2026, 12, 3)


def test_a_topic_day_says_whether_the_master_log_holds_what_kafka_holds():
    assert TopicDay("trips.requests", D, 100, True, 100).verdict == "ok"
    assert "lacks 5" in TopicDay("trips.requests", D, 100, True, 95).verdict
    assert "more than Kafka" in TopicDay("trips.requests", D, 100, True, 105).verdict
    assert TopicDay("trips.requests", D, 60, False, 100).verdict.startswith("ok (Kafka's retention")
    assert "2 records held more than once" in TopicDay("trips.requests", D, 100, True, 102, duplicates=2).verdict


def test_a_view_day_says_which_view_differs_from_master_data_and_how_to_rebuild_it():
    c = DayCounts(40, 30)
    assert ViewDay("taxi", D, c, c, c, purged=False).verdict == "ok"
    assert ViewDay("taxi", D, c, c, DayCounts(0, 0), purged=True).verdict == "ok (purged from MySQL by retention)"
    assert "not in Hive yet" in ViewDay("taxi", D, c, None, c, purged=False).verdict
    # A day that has not ended yet is not due in Hive: MySQL still has to agree with master data.
    assert ViewDay("taxi", D, c, None, c, purged=False, ended=False).verdict.startswith("ok (in Hive once")
    assert "MySQL differs" in ViewDay("taxi", D, c, None, DayCounts(39, 30), purged=False, ended=False).verdict
    hive = ViewDay("bike", D, c, DayCounts(39, 30), c, purged=False).verdict
    assert "Hive differs" in hive and "lambdaml views rebuild --workload bike --from 2026-12-03 --to 2026-12-03 " \
        "--no-mysql" in hive
    mysql = ViewDay("taxi", D, c, c, DayCounts(41, 30), purged=False).verdict
    assert "MySQL differs" in mysql and "--no-hive" in mysql
    assert "back in MySQL" in ViewDay("taxi", D, c, c, DayCounts(1, 0), purged=True).verdict


def test_a_reconciliation_differs_when_any_stage_does_and_prints_every_row():
    c = DayCounts(40, 30)
    good = Reconciliation("taxi", D, D, [TopicDay("trips.requests", D, 10, False, 12)],
                          [ViewDay("taxi", D, c, c, c, purged=False)])
    assert not good.differs
    text = good.text()
    assert "trips.requests" in text and "10+" in text and "40/30" in text
    assert good.as_json()["views"][0] == {"workload": "taxi", "day": "2026-12-03",
                                         "master": {"predictions": 40, "completed": 30},
                                         "hive": {"predictions": 40, "completed": 30},
                                         "mysql": {"predictions": 40, "completed": 30}, "purged": False,
                                         "ended": True, "verdict": "ok"}
    bad = Reconciliation("taxi", D, D, [TopicDay("trips.requests", D, 10, True, 9)], [])
    assert bad.differs and bad.as_json()["differs"]


def test_the_daily_reconciliation_runs_in_one_run_a_day():
    slot = dt.timedelta(minutes=15)
    at = dt.datetime(2026, 12, 3, 7, 45, tzinfo=dt.UTC)
    assert in_daily_slot(at, "07:45", slot)
    assert in_daily_slot(at + dt.timedelta(minutes=14), "07:45", slot)
    assert not in_daily_slot(at + slot, "07:45", slot)
    assert not in_daily_slot(at - dt.timedelta(minutes=1), "07:45", slot)
    assert in_daily_slot(dt.datetime(2026, 12, 3, 8, 45, tzinfo=dt.timezone(dt.timedelta(hours=1))), "07:45", slot)


def test_views_commands_refuse_bad_days_before_starting_anything():
    runner = CliRunner()
    out = runner.invoke(app, ["views", "rebuild", "--from", "2026-13-01"])
    assert out.exit_code != 0 and "expected YYYY-MM-DD" in out.output
    out = runner.invoke(app, ["views", "rebuild", "--from", "2026-12-03", "--to", "2026-12-01"])
    assert out.exit_code != 0 and "before --from" in out.output
    out = runner.invoke(app, ["views", "reconcile", "--workload", "nope"])
    assert out.exit_code != 0 and "no such workload" in out.output
