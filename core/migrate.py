"""Versioned MySQL migrations: ``sql/mysql/NNN_name.sql``, applied once each, in order.

Applied versions are recorded in ``schema_migrations`` with the file's checksum,
so that an edited migration is reported instead of silently skipped. After them, every workload's real-time views
(``core.views``, derived from its contract) are created where missing: a new workload needs no migration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.db import SQL_DIR, engine
from core.settings import Settings

MIGRATIONS_DIR = SQL_DIR / "mysql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append(Migration(int(m.group(1)), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration on ``;`` at line ends, dropping ``--`` comment lines."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", "\n".join(lines)) if s.strip()]


def apply(settings: Settings) -> list[int]:
    """Apply pending migrations. Returns the versions applied now."""
    from sqlalchemy import text

    eng = engine(settings)
    applied_now: list[int] = []
    try:
        with eng.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INT PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                    " checksum CHAR(64) NOT NULL,"
                    " applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
                )
            )
            done = {row.version: row.checksum for row in conn.execute(text("SELECT version, checksum FROM schema_migrations"))}
        for mig in discover():
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise RuntimeError(
                        f"migration {mig.path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            # MySQL commits DDL implicitly; each migration is written to be re-runnable.
            with eng.begin() as conn:
                for stmt in mig.statements():
                    conn.execute(text(stmt))
                conn.execute(
                    text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                    {"v": mig.version, "n": mig.path.name, "c": mig.checksum},
                )
            applied_now.append(mig.version)
        ensure_views(eng, settings)
    finally:
        eng.dispose()
    return applied_now


def ensure_views(eng, settings: Settings | None = None) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` every workload's view tables (those a migration made stay as they are).
    Returns the tables it checked."""
    from core import views as real_time
    from core.workload import known, load

    tables = []
    with eng.begin() as conn:
        for name in known():
            views = real_time.of(load(name), settings)
            for statement in views.ddl():
                conn.exec_driver_sql(statement)
            tables += [views.predictions, views.outcomes, views.hourly]
    return tables
