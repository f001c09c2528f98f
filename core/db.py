"""MySQL access: engines and named SQL files (bound parameters only)."""

from __future__ import annotations

from functools import lru_cache

from core.settings import PROJECT_ROOT, Settings

SQL_DIR = PROJECT_ROOT / "sql"


def engine(settings: Settings, *, analyst: bool = False):
    from sqlalchemy import create_engine

    return create_engine(
        settings.mysql.sqlalchemy_url(analyst=analyst),
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``, e.g. ``load_sql("queries/zone_stats")``."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR.resolve() not in path.parents:
        raise ValueError(f"SQL name escapes sql/: {name}")
    return path.read_text()
