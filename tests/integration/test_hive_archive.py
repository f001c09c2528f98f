"""Hive batch views recomputed from master data, MySQL retention, the rebuild of both from master data, the Lambda
merge and the analyst queries, against the real stack.

The tests own far-future pickup days (2070-2089: no other data has them), trip ids with their own prefix, a master
log of their own (``tests/master_log.py``: the events as the stream encodes them, laid out as the lake sink writes
them) and their own ``batch_coverage`` row, and remove all of it (MySQL rows, Hive partitions, lake and master
files) at the end; the platform's global coverage row is never touched. MySQL gets the same trips as the sync would
write them (the real-time side of the merge).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from typer.testing import CliRunner

from core import hive, lake
from core.cli import app
from core.db import SQL_DIR, engine, load_sql
from serving import archive, merge, rebuild
from tests.airflow_api import AirflowAPI
from tests.integration.master_log import MasterLog, private
from workloads.taxi.tlc import RAW_SCHEMA

TABLES = ("trips", "quarantine", "predictions", "zone_hour_stats", "model_error")
TRIPS_PER_DAY = 40
VERSION = "trip_duration:it-archive"
BAD_VERSION = "trip_duration:it-constant"
VALID, QUARANTINED = 5, 2


@dataclass(frozen=True)
class Trip:
    trip_id: str
    zone: int
    pickup: dt.datetime
    predicted: float
    actual: float | None
    version: str


@dataclass
class World:
    tag: str
    view: str
    d1: dt.date
    d2: dt.date
    zones: tuple[int, int]
    lake_root: str
    trips: list[Trip]
    settings: object  # the stack's settings with the world's own master log
    log: MasterLog

    def record(self, trips: list[Trip]) -> None:
        """The trips' prediction and outcome events into the world's master log."""
        for t in trips:
            self.log.predicted({"trip_id": t.trip_id, "pickup_ts": t.pickup, "PULocationID": t.zone,
                                "DOLocationID": 1, "passenger_count": 1, "trip_distance": 2.5}, t.predicted,
                               t.version, t.pickup)
            if t.actual is not None:
                self.log.completed(t.trip_id, t.pickup + dt.timedelta(seconds=t.actual), t.actual)
        self.log.flush()


def _trips(tag: str, days: list[dt.date], zones: tuple[int, int]) -> list[Trip]:
    rng = random.Random(tag)
    out = []
    for day in days:
        for i in range(TRIPS_PER_DAY):
            pickup = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60)))
            predicted = round(rng.uniform(200, 2000), 3)
            actual = round(predicted + rng.uniform(-150, 300), 3) if rng.random() < 0.7 else None  # > 0
            if i % 4 == 0:  # a bad model served for a while: a constant predictor
                predicted, version = 60.0, BAD_VERSION
            else:
                version = VERSION
            out.append(Trip(f"it-arch-{tag}-{day}-{i}", zones[i % 2], pickup, predicted, actual, version))
    return out


def _insert(conn, trips: list[Trip]) -> None:
    conn.execute(text(
        "INSERT INTO predictions_recent (trip_id, model_version, pu_location_id, do_location_id, passenger_count,"
        " trip_distance, pickup_ts, predicted_duration_s, scored_ts, event_ts)"
        " VALUES (:trip_id, :version, :zone, 1, 1, 2.5, :pickup, :predicted, :pickup, :pickup)"),
        [t.__dict__ for t in trips])
    done = [t for t in trips if t.actual is not None]
    if done:
        conn.execute(text("INSERT INTO trip_outcomes (trip_id, dropoff_ts, duration_s)"
                          " VALUES (:trip_id, :dropoff, :actual)"),
                     [{"trip_id": t.trip_id, "dropoff": t.pickup + dt.timedelta(seconds=t.actual), "actual": t.actual}
                      for t in done])


def _zone_hours(trips: list[Trip]) -> dict[tuple[int, dt.datetime], list[float]]:
    """MySQL's real-time view of ``trips`` as the sync keeps it.

    Per (zone, hour): trips, sum predicted, completed, sum actual, sum |predicted - actual| over completed.
    """
    view: dict[tuple[int, dt.datetime], list[float]] = {}
    for t in trips:
        row = view.setdefault((t.zone, t.pickup.replace(minute=0, second=0)), [0, 0.0, 0, 0.0, 0.0])
        row[0] += 1
        row[1] += t.predicted
        if t.actual is not None:
            row[2] += 1
            row[3] += t.actual
            row[4] += abs(t.predicted - t.actual)
    return view


def _upsert_zone_hours(conn, trips: list[Trip]) -> None:
    conn.execute(text(
        "INSERT INTO zone_hour_stats (pu_location_id, hour_start, trips, sum_predicted_s, completed, sum_actual_s,"
        " sum_abs_error_s) VALUES (:z, :h, :n, :p, :c, :a, :e) ON DUPLICATE KEY UPDATE trips = VALUES(trips),"
        " sum_predicted_s = VALUES(sum_predicted_s), completed = VALUES(completed),"
        " sum_actual_s = VALUES(sum_actual_s), sum_abs_error_s = VALUES(sum_abs_error_s)"),
        [{"z": z, "h": h, "n": n, "p": p, "c": c, "a": a, "e": e}
         for (z, h), (n, p, c, a, e) in _zone_hours(trips).items()])


def _truth(trips: list[Trip], zone: int, first: dt.date, last: dt.date) -> merge.Sums:
    mine = [t for t in trips if t.zone == zone and first <= t.pickup.date() <= last]
    done = [t for t in mine if t.actual is not None]
    return merge.Sums(len(mine), sum(t.predicted for t in mine), len(done),
                      sum(abs(t.predicted - t.actual) for t in done))


def _write_lake_day(settings, lake_root: str, day: dt.date) -> None:
    base = {"VendorID": 1, "passenger_count": 1, "trip_distance": 2.0, "PULocationID": 10, "DOLocationID": 20,
            "tpep_pickup_datetime": dt.datetime.combine(day, dt.time(8)),
            "tpep_dropoff_datetime": dt.datetime.combine(day, dt.time(8, 20))}
    valid = pa.Table.from_pylist([base] * VALID, schema=RAW_SCHEMA)
    bad_schema = RAW_SCHEMA.append(pa.field("failed_rule", pa.string()))
    bad = pa.Table.from_pylist([{**base, "PULocationID": 999, "failed_rule": "unknown_zone"}] * QUARANTINED,
                               schema=bad_schema)
    for dataset, table in (("validated/trips", valid), ("quarantine/trips", bad)):
        fs, path = lake.filesystem(settings, lake.partition(lake_root, dataset, day, "pickup_date"))
        pq.write_table(table, f"{path}/part-00000.parquet", filesystem=fs)


def _hive(settings, sql: str, params: dict | None = None) -> list[tuple]:
    sp = settings.spark
    conn = hive.connect(settings)
    try:
        cur = conn.cursor()
        for table in TABLES:
            cur.execute(f"REFRESH TABLE {sp.hive_database}.{table}")
        cur.execute(sql, params)
        return cur.fetchall()
    finally:
        conn.close()


def _hive_counts(settings, day: dt.date) -> dict[str, tuple]:
    db, d = settings.spark.hive_database, {"d": day.isoformat()}
    where = "WHERE pickup_date = DATE %(d)s"
    return {
        "trips": _hive(settings, f"SELECT COUNT(*) FROM {db}.trips {where}", d)[0],
        "quarantine": _hive(settings, f"SELECT COUNT(*), MIN(failed_rule) FROM {db}.quarantine {where}", d)[0],
        "predictions": _hive(settings, f"SELECT COUNT(*), COUNT(DISTINCT trip_id), COUNT(actual_duration_s) "
                                       f"FROM {db}.predictions {where}", d)[0],
        "zone_hour_stats": _hive(settings, f"SELECT COUNT(*), SUM(trips), SUM(completed) "
                                           f"FROM {db}.zone_hour_stats {where}", d)[0],
    }


def _mysql_rows(settings, world: World, day: dt.date) -> tuple[int, int, int]:
    """The test's predictions, outcomes and zone-hour rows of ``day`` in MySQL."""
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            prefix = {"p": f"it-arch-{world.tag}-{day}-%"}
            preds = conn.execute(text("SELECT COUNT(*) FROM predictions_recent WHERE trip_id LIKE :p"), prefix).scalar()
            outs = conn.execute(text("SELECT COUNT(*) FROM trip_outcomes WHERE trip_id LIKE :p"), prefix).scalar()
            hours = conn.execute(text("SELECT COUNT(*) FROM zone_hour_stats WHERE hour_start >= :d "
                                      "AND hour_start < :e"), {"d": day, "e": day + dt.timedelta(days=1)}).scalar()
        return preds, outs, hours
    finally:
        eng.dispose()


def _drop_hive_partitions(spark, settings, days: list[dt.date]) -> None:
    archive.create_tables(spark, settings.spark.hive_database)
    for table in TABLES:
        for day in days:
            spark.sql(f"ALTER TABLE {settings.spark.hive_database}.{table} DROP IF EXISTS "
                      f"PARTITION (pickup_date = '{day.isoformat()}')")


def _forget_view(conn, view: str) -> None:
    conn.execute(text("DELETE FROM archive_days WHERE view_name = :v"), {"v": view})
    conn.execute(text("DELETE FROM batch_coverage WHERE view_name = :v"), {"v": view})


@pytest.fixture(scope="module")
def world(stack, spark, settings) -> Iterator[World]:
    tag = uuid.uuid4().hex[:10]
    d1 = dt.date(2070, 1, 1) + dt.timedelta(days=int(tag[:6], 16) % 7000)  # 2070-2089: days no other data has
    zone = 1 + int(tag[6:], 16) % 250
    d2, zones = d1 + dt.timedelta(days=1), (zone, zone + 1)
    mine = private(settings, tag)
    w = World(tag, f"it_archive_{tag}", d1, d2, zones, settings.s3.uri("tests", f"archive-{tag}"),
              _trips(tag, [d1, d2], zones), mine, MasterLog(mine, "taxi"))
    w.record(w.trips)
    eng = engine(settings)
    with eng.begin() as conn:
        _insert(conn, w.trips)
        _upsert_zone_hours(conn, w.trips)
        # This view's coverage starts at day 1: for it, Hive holds every day before.
        conn.execute(text("INSERT INTO batch_coverage (view_name, covered_until) VALUES (:v, :d)"),
                     {"v": w.view, "d": d1})
    _write_lake_day(settings, w.lake_root, d1)
    yield w
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM trip_outcomes WHERE trip_id LIKE :p"), {"p": f"it-arch-{tag}-%"})
        conn.execute(text("DELETE FROM predictions_recent WHERE trip_id LIKE :p"), {"p": f"it-arch-{tag}-%"})
        conn.execute(text("DELETE FROM zone_hour_stats WHERE hour_start >= :a AND hour_start < :b"),
                     {"a": d1, "b": d2 + dt.timedelta(days=1)})
        _forget_view(conn, w.view)
    eng.dispose()
    _drop_hive_partitions(spark, settings, [w.d1, w.d2])
    fs, path = lake.filesystem(settings, w.lake_root)
    fs.delete_dir(path)
    w.log.delete()


def _assert_merge_is_the_truth(world: World, settings, now: dt.datetime, days: int, sources: list[str]) -> None:
    first, last = merge.window(days, now.date())
    for zone in world.zones:
        got = merge.zone_stats(settings, zone, days, now, view=world.view)
        assert [p.source for p in got.parts] == sources
        want = _truth(world.trips, zone, first, last)
        assert (got.total.trips, got.total.completed) == (want.trips, want.completed)
        assert got.total.sum_predicted_s == pytest.approx(want.sum_predicted_s)
        assert got.total.sum_abs_error_s == pytest.approx(want.sum_abs_error_s)
        assert got.total.mae_s == pytest.approx(want.mae_s)
        assert got.total.mean_predicted_s == pytest.approx(want.mean_predicted_s)


def test_archive_writes_the_day_to_hive_verified_and_moves_coverage(world, spark, settings):
    d1, d2 = world.d1, world.d2
    archived, retention = archive.run(spark, world.settings, d1, view=world.view, today=d1 + dt.timedelta(days=3),
                                      lake_root=world.lake_root, wait_for_master=False)
    day1 = [t for t in world.trips if t.pickup.date() == d1]
    completed = sum(t.actual is not None for t in day1)
    hours = len(_zone_hours(day1))
    assert archived.rows == {"trips": VALID, "quarantine": QUARANTINED, "predictions": len(day1),
                             "zone_hour_stats": hours}
    assert archived.covered_until == d2
    assert retention.purged == () and retention.stale == ()
    assert _hive_counts(settings, d1) == {
        "trips": (VALID,), "quarantine": (QUARANTINED, "unknown_zone"),
        "predictions": (len(day1), len(day1), completed), "zone_hour_stats": (hours, len(day1), completed)}
    # The error per model version: the bad version shows under its own name.
    errors = {r[0]: r[1:] for r in _hive(settings, f"SELECT model_version, trips, completed, sum_abs_error_s FROM "
                                                   f"{settings.spark.hive_database}.model_error WHERE pickup_date = "
                                                   f"DATE %(d)s", {"d": d1.isoformat()})}
    assert set(errors) == {BAD_VERSION, VERSION}
    for version, (n, done, error) in errors.items():
        mine = [t for t in day1 if t.version == version]
        assert (n, done) == (len(mine), sum(t.actual is not None for t in mine))
        assert error == pytest.approx(sum(abs(t.predicted - t.actual) for t in mine if t.actual is not None))
    assert errors[BAD_VERSION][2] / errors[BAD_VERSION][1] > 2 * errors[VERSION][2] / errors[VERSION][1]
    # Day 2 is not archived; day 1 is still in MySQL (inside the retention window).
    assert _hive_counts(settings, d2)["predictions"] == (0, 0, 0)
    assert _mysql_rows(settings, world, d1) == (len(day1), completed, hours)


def test_merge_equals_the_truth_on_both_sides_and_across_the_boundary(world, settings):
    noon = dt.time(12)
    d1, d2 = world.d1, world.d2
    # Day 1 is in Hive and still in MySQL: it must be read from Hive only.
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, noon), 2, ["hive", "mysql"])
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, noon), 5, ["hive", "mysql"])
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, noon), 1, ["mysql"])
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d1, noon), 1, ["hive"])
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2 + dt.timedelta(days=3), noon), 4, ["mysql"])


def _zone_hour_rows(settings, day: dt.date) -> dict[tuple[int, dt.datetime], tuple]:
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text("SELECT pu_location_id, hour_start, trips, sum_predicted_s, completed, "
                                     "sum_actual_s, sum_abs_error_s FROM zone_hour_stats WHERE hour_start >= :d "
                                     "AND hour_start < :e"), {"d": day, "e": day + dt.timedelta(days=1)}).all()
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}
    finally:
        eng.dispose()


def test_rebuild_undoes_hand_edits_of_mysql_from_master_data(world, spark, settings):
    """Human error in MySQL: rows of predictions_recent and zone_hour_stats deleted and altered by hand. The rebuild
    of the day from master data brings back the values the master log gives."""
    d2 = world.d2
    day2 = [t for t in world.trips if t.pickup.date() == d2]
    truth = {key: pytest.approx(tuple(values)) for key, values in _zone_hours(day2).items()}
    assert _zone_hour_rows(settings, d2) == truth
    eng = engine(settings)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM predictions_recent WHERE trip_id IN :ids").bindparams(
            bindparam("ids", expanding=True)), {"ids": [t.trip_id for t in day2[:3]]})
        conn.execute(text("UPDATE predictions_recent SET predicted_duration_s = 1, model_version = 'edited' "
                          "WHERE trip_id = :id"), {"id": day2[5].trip_id})
        conn.execute(text("UPDATE zone_hour_stats SET trips = trips + 100 WHERE hour_start >= :d AND hour_start < :e"),
                     {"d": d2, "e": d2 + dt.timedelta(days=1)})
        conn.execute(text("INSERT INTO zone_hour_stats (pu_location_id, hour_start, trips, sum_predicted_s, completed,"
                          " sum_actual_s, sum_abs_error_s) VALUES (:z, :h, 7, 7, 0, 0, 0) ON DUPLICATE KEY UPDATE"
                          " sum_predicted_s = 7"), {"z": world.zones[0] + 2, "h": dt.datetime.combine(d2, dt.time(3))})
    eng.dispose()
    assert _zone_hour_rows(settings, d2) != truth
    assert _mysql_rows(settings, world, d2)[0] == len(day2) - 3

    done = rebuild.rebuild(spark, world.settings, d2, d2, hive=False, wait_for_master=False)
    completed = sum(t.actual is not None for t in day2)
    assert [(r.day, r.hive, r.mysql) for r in done] == [
        (d2, {}, {"predictions_recent": len(day2), "trip_outcomes": completed, "zone_hour_stats": len(truth)})]
    assert _zone_hour_rows(settings, d2) == truth
    assert _mysql_rows(settings, world, d2) == (len(day2), completed, len(truth))
    eng = engine(settings)
    with eng.connect() as conn:
        edited = conn.execute(text("SELECT predicted_duration_s, model_version FROM predictions_recent "
                                   "WHERE trip_id = :id"), {"id": day2[5].trip_id}).one()
    eng.dispose()
    assert tuple(edited) == (day2[5].predicted, day2[5].version)
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, dt.time(12)), 2, ["hive", "mysql"])


def test_rerun_overwrites_and_retention_deletes_only_archived_old_days(world, spark, settings):
    d1, d2 = world.d1, world.d2
    before = _hive_counts(settings, d1)
    day2 = [t for t in world.trips if t.pickup.date() == d2]
    day2_rows = _mysql_rows(settings, world, d2)
    archived, retention = archive.run(spark, world.settings, d1, view=world.view, today=d1 + dt.timedelta(days=30),
                                      lake_root=world.lake_root, wait_for_master=False)
    assert _hive_counts(settings, d1) == before  # overwritten, not appended
    assert archived.covered_until == d2
    # Day 1: archived, covered and old: deleted. Day 2: as old, but not archived: untouched.
    assert retention.purged == (d1,) and retention.stale == ()
    assert _mysql_rows(settings, world, d1) == (0, 0, 0)
    assert _mysql_rows(settings, world, d2) == day2_rows and day2_rows[0] == len(day2)
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, dt.time(12)), 2, ["hive", "mysql"])

    # Re-running a purged day recomputes it from master data: MySQL no longer holds it, and is not read.
    again, _ = archive.run(spark, world.settings, d1, view=world.view, today=d1 + dt.timedelta(days=30),
                           lake_root=world.lake_root, wait_for_master=False)
    assert again.rows == archived.rows
    assert _hive_counts(settings, d1) == before
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, dt.time(12)), 2, ["hive", "mysql"])


def test_a_day_that_changed_after_its_archive_is_kept_until_archived_again(world, spark, settings):
    d2, old = world.d2, world.d1 + dt.timedelta(days=30)
    archived, retention = archive.run(spark, world.settings, d2, view=world.view, today=world.d1,
                                      lake_root=world.lake_root, wait_for_master=False)
    assert archived.rows["trips"] is None and archived.covered_until == d2 + dt.timedelta(days=1)
    assert retention.purged == ()
    late = Trip(f"it-arch-{world.tag}-{d2}-late", world.zones[0], dt.datetime.combine(d2, dt.time(23, 59)),
                500.0, 480.0, VERSION)
    eng = engine(settings)
    with eng.begin() as conn:
        _insert(conn, [late])
        _upsert_zone_hours(conn, [t for t in world.trips if t.pickup.date() == d2] + [late])
    eng.dispose()
    world.record([late])  # a late event: the master log and MySQL both get it
    world.trips.append(late)

    retention = archive.apply_retention(settings, view=world.view, today=old)
    assert retention.purged == () and retention.stale == (d2,)
    assert _mysql_rows(settings, world, d2)[0] == TRIPS_PER_DAY + 1

    archive.archive(spark, world.settings, d2, view=world.view, lake_root=world.lake_root, wait_for_master=False)
    assert archive.apply_retention(settings, view=world.view, today=old).purged == (d2,)
    assert _mysql_rows(settings, world, d2) == (0, 0, 0)
    assert _hive_counts(settings, d2)["predictions"][:2] == (TRIPS_PER_DAY + 1, TRIPS_PER_DAY + 1)
    _assert_merge_is_the_truth(world, settings, dt.datetime.combine(d2, dt.time(12)), 2, ["hive"])


def test_analyst_reads_but_cannot_write(stack, settings):
    analyst = engine(settings, analyst=True)
    try:
        with analyst.connect() as conn:
            for table in ("archive_days", "batch_coverage", "predictions_recent", "trip_outcomes", "zone_hour_stats"):
                assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() >= 0
        for statement in (
            "INSERT INTO batch_coverage (view_name, covered_until) VALUES ('analyst', '2000-01-01')",
            ("INSERT INTO predictions_recent (trip_id, model_version, pu_location_id, do_location_id, pickup_ts,"
             " predicted_duration_s, scored_ts) VALUES ('analyst', 'x', 1, 1, NOW(), 1, NOW())"),
            "DELETE FROM archive_days",
            "DELETE FROM trip_outcomes",
        ):
            with pytest.raises((OperationalError, ProgrammingError)) as err, analyst.begin() as conn:
                conn.execute(text(statement))
            assert "denied" in str(err.value).lower()
    finally:
        analyst.dispose()


QUERY_COLUMNS = {
    "recent_error_by_zone": ["pu_location_id", "trips", "completed", "mae_s", "mean_predicted_s", "mean_actual_s"],
    "latency_percentiles": ["source", "measure", "samples", "p50", "p90", "p95", "p99", "max_value"],
    "model_versions_over_time": ["day", "model_version", "stage", "promoted_at", "predictions", "completed", "mae_s",
                                 "first_scored", "last_scored"],
    "drift_history": ["window_start", "window_end", "model_version", "feature", "psi", "live_mae_s", "test_mae_s",
                      "breached", "created_at"],
}


def test_each_analyst_query_runs_as_the_analyst_with_its_columns(stack, settings):
    assert {p.stem for p in (SQL_DIR / "queries").glob("*.sql")} == set(QUERY_COLUMNS)
    analyst = engine(settings, analyst=True)
    try:
        with analyst.connect() as conn:
            for name, columns in QUERY_COLUMNS.items():
                sql = text(load_sql(f"queries/{name}"))
                result = conn.execute(sql, dict.fromkeys(sql.compile().params))
                assert list(result.keys()) == columns, name
                result.all()
    finally:
        analyst.dispose()


def test_query_commands_print_aligned_tables(stack, settings, unique):
    zone = 29500 + int(unique[:4], 16) % 3000  # 29500-32499: no real data, not the archive tests' zones
    hour = dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    eng = engine(settings)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO zone_hour_stats (pu_location_id, hour_start, trips, sum_predicted_s, completed,"
                          " sum_actual_s, sum_abs_error_s) VALUES (:z, :h, 4, 2400, 2, 1300, 150)"),
                     {"z": zone, "h": hour})
    try:
        runner = CliRunner()
        out = runner.invoke(app, ["query", "sql", "recent_error_by_zone", "--param", f"zone={zone}"])
        assert out.exit_code == 0, out.output
        header, row, count = out.output.splitlines()
        assert header.split() == QUERY_COLUMNS["recent_error_by_zone"]
        assert row.split() == [str(zone), "4", "2", "75", "600", "650"]
        assert count == "(1 row)"
        assert len(header) == len(row)  # aligned

        out = runner.invoke(app, ["query", "zone-stats", "--zone", str(zone), "--days", "1"])
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert lines[1].split() == ["source", "days", "trips", "completed", "mean_predicted_s", "mae_s"]
        assert lines[-1].split()[-4:] == ["4", "2", "600", "75"]
        assert lines[-2].split()[0] in ("mysql", "hive")

        out = runner.invoke(app, ["query", "sql", "no_such_query"])
        assert out.exit_code == 1
        assert all(name in out.output for name in QUERY_COLUMNS)
    finally:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM zone_hour_stats WHERE pu_location_id = :z"), {"z": zone})
        eng.dispose()


def test_hive_archive_dag_archives_an_empty_day_without_jumping_a_gap(stack, spark, settings, unique):
    """Rule: a day archived empty is recorded like any other; coverage only moves over consecutive recorded
    days, so an empty day after an unarchived one leaves coverage where it is until the gap is archived."""
    day = dt.date(1960, 1, 1) + dt.timedelta(days=int(unique[:6], 16) % 7000)  # before the other tests' days
    gap, view = day - dt.timedelta(days=1), f"it_dag_{unique}"
    eng = engine(settings)
    with eng.begin() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM predictions_recent WHERE pickup_ts >= :a AND pickup_ts < :b"),
                            {"a": gap, "b": day + dt.timedelta(days=1)}).scalar() == 0
        conn.execute(text("INSERT INTO batch_coverage (view_name, covered_until) VALUES (:v, :d)"),
                     {"v": view, "d": gap})
    try:
        api = AirflowAPI(settings)
        # Without waiting for the lake sink: nothing in this test is on Kafka, and no test runs the shared sink.
        run = api.run_dag("hive_archive", conf={"day": day.isoformat(), "view": view, "wait_for_master": False},
                          timeout=900)
        assert run["state"] == "success", api.failed_tasks("hive_archive", run["dag_run_id"])
        with eng.connect() as conn:
            ledger = text("SELECT predictions, completed FROM archive_days WHERE view_name = :v AND day = :d")
            assert conn.execute(ledger, {"v": view, "d": day}).one() == (0, 0)
            assert archive.coverage(conn, view) == gap

        # Archiving the gap (empty as well) moves coverage over both days.
        assert archive.archive(spark, settings, gap, view=view, wait_for_master=False).covered_until == \
            day + dt.timedelta(days=1)
    finally:
        with eng.begin() as conn:
            _forget_view(conn, view)
        eng.dispose()


def test_a_bike_day_archives_into_its_own_hive_tables_with_its_label_and_log_loss(stack, spark, settings):
    """The batch views of another workload, from its master log: its predictions (with the label the sync's SQL
    derives from the outcome and the rider) and its hourly view go to its own Hive tables, partitioned by its own
    column; a malformed record is left out; the lake has no partition of the day, so its lake tables are left as
    they are; coverage moves for its own view. MySQL is not read."""
    from core.task import log_loss
    from core.workload import load

    bike = load("bike")
    tables = archive.hive_tables(bike)
    tag = uuid.uuid4().hex[:10]
    day = dt.date(2070, 1, 1) + dt.timedelta(days=int(tag[:6], 16) % 7000)
    view, prefix = f"it_bike_archive_{tag}", f"it-arch-bike-{tag}-"
    rng = random.Random(tag)
    rides = [(f"{prefix}{i:03d}", dt.datetime.combine(day, dt.time(8 + i % 3, i)), f"it-{tag}-{i % 2}",
              rng.choice(["member", "casual"]), round(rng.uniform(0.05, 0.95), 4)) for i in range(30)]
    durations = {r[0]: rng.choice([600.0, 2000.0, 3000.0]) for r in rides[:20]}
    mine = private(settings, tag)
    log = MasterLog(mine, "bike")
    for ride_id, started, station, rider, p in rides:
        log.predicted({"ride_id": ride_id, "started_at": started, "start_station_id": station,
                       "rideable_type": "classic_bike", "member_casual": rider}, p, "bike_overtime:it", started)
    for ride_id, duration in durations.items():
        log.completed(ride_id, dt.datetime.combine(day, dt.time(12)), duration)
    log.raw(log.topics.predictions, dt.datetime.combine(day, dt.time(9)), "bad", b'{"ride_id": 1}')  # malformed
    log.flush()
    eng = engine(settings)
    db = settings.spark.hive_database
    try:
        with eng.begin() as conn:  # this view's coverage starts at the day: Hive holds every day before
            conn.execute(text("INSERT INTO batch_coverage (view_name, covered_until) VALUES (:v, :d)"),
                         {"v": view, "d": day})
        archived = archive.archive(spark, mine, day, view=view, workload="bike",
                                   lake_root=settings.s3.uri("tests", f"archive-bike-{tag}"), wait_for_master=False)
        assert archived.rows[tables.validated] is None and archived.rows[tables.quarantine] is None
        assert archived.rows[tables.predictions] == 30 and archived.covered_until == day + dt.timedelta(days=1)
        where = f"WHERE {tables.partition} = DATE %(d)s AND ride_id LIKE %(p)s"
        conn = hive.connect(settings)
        try:
            cur = conn.cursor()
            for table in (tables.predictions, tables.hourly):
                cur.execute(f"REFRESH TABLE {db}.{table}")
            cur.execute(f"SELECT COUNT(*), COUNT(actual_overtime), SUM(actual_overtime) FROM {db}.bike_predictions "
                        + where, {"d": day.isoformat(), "p": prefix + "%"})
            count, completed, overtime = cur.fetchone()
            cur.execute(f"SELECT SUM(rides), SUM(completed), SUM(sum_loss) FROM {db}.bike_hourly WHERE "
                        f"{tables.partition} = DATE %(d)s AND start_station_id LIKE %(s)s",
                        {"d": day.isoformat(), "s": f"it-{tag}-%"})
            hourly = cur.fetchone()
        finally:
            conn.close()
        limit = {"member": 45 * 60, "casual": 30 * 60}
        labels = [1.0 if durations[r[0]] > limit[r[3]] else 0.0 for r in rides[:20]]
        assert (count, completed, overtime) == (30, 20, sum(labels))
        assert (hourly[0], hourly[1]) == (30, 20)
        assert hourly[2] / 20 == pytest.approx(log_loss(labels, [r[4] for r in rides[:20]]), rel=1e-9)
    finally:
        with eng.begin() as conn:
            _forget_view(conn, view)
        eng.dispose()
        log.delete()
        for table in (tables.predictions, tables.hourly, tables.model_error):
            spark.sql(f"ALTER TABLE {db}.{table} DROP IF EXISTS PARTITION ({tables.partition} = '{day}')")
