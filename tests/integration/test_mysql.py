"""MariaDB: upserts round-trip through SQLAlchemy + PyMySQL; the analyst cannot write."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.db import engine

UPSERT = text(
    "INSERT INTO zone_hour_stats (pu_location_id, hour_start, trips, sum_predicted_s, completed, sum_actual_s,"
    " sum_abs_error_s) VALUES (:z, :h, :trips, :pred, 0, 0, 0)"
    " ON DUPLICATE KEY UPDATE trips = VALUES(trips), sum_predicted_s = VALUES(sum_predicted_s)"
)


@pytest.fixture
def app_engine(stack, settings):
    eng = engine(settings)
    yield eng
    eng.dispose()


def test_upsert_round_trip(app_engine, unique):
    zone = 30000 + int(unique[:4], 16) % 2000  # a zone id no real data uses
    key = {"z": zone, "h": "2026-01-01 10:00:00"}
    try:
        with app_engine.begin() as conn:
            conn.execute(UPSERT, {**key, "trips": 3, "pred": 900.0})
        with app_engine.begin() as conn:
            conn.execute(UPSERT, {**key, "trips": 5, "pred": 1500.0})
        with app_engine.connect() as conn:
            rows = conn.execute(
                text("SELECT trips, sum_predicted_s FROM zone_hour_stats WHERE pu_location_id = :z AND hour_start = :h"),
                key,
            ).all()
        assert [tuple(r) for r in rows] == [(5, 1500.0)]
    finally:
        with app_engine.begin() as conn:
            conn.execute(text("DELETE FROM zone_hour_stats WHERE pu_location_id = :z"), {"z": zone})


def test_migrations_are_recorded_and_idempotent(app_engine, settings):
    from core import migrate

    assert migrate.apply(settings) == []  # already applied by stack up
    with app_engine.connect() as conn:
        versions = [r[0] for r in conn.execute(text("SELECT version FROM schema_migrations ORDER BY version"))]
    assert versions == [m.version for m in migrate.discover()]


def test_analyst_can_read_but_not_write(stack, settings):
    analyst = engine(settings, analyst=True)
    try:
        with analyst.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM model_versions")).scalar() >= 0
        for statement in (
            "INSERT INTO serving_metrics (source, name, ts, value) VALUES ('x', 'y', NOW(), 1)",
            "DELETE FROM model_versions",
            "CREATE TABLE analyst_table (id INT)",
            "DROP TABLE zone_hour_stats",
        ):
            with pytest.raises((OperationalError, ProgrammingError)) as err:
                with analyst.begin() as conn:
                    conn.execute(text(statement))
            assert "denied" in str(err.value).lower()
    finally:
        analyst.dispose()
