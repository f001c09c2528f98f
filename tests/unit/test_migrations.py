from __future__ import annotations

import pytest

from core import migrate


def test_split_statements_ignores_comments_and_blank_parts():
    sql = "-- header\nCREATE TABLE a (x INT);\n\n-- note; with semicolon\nCREATE TABLE b (y INT);\n"
    assert migrate.split_statements(sql) == ["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]


def test_project_migrations_are_numbered_in_order():
    found = migrate.discover()
    assert found, "no migrations in sql/mysql"
    assert [m.version for m in found] == sorted(m.version for m in found)
    for m in found:
        assert m.statements(), m.path


def test_bad_migration_name_is_rejected(tmp_path):
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="001_name.sql"):
        migrate.discover(tmp_path)


def test_duplicate_versions_are_rejected(tmp_path):
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="duplicate"):
        migrate.discover(tmp_path)
