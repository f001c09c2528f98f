"""Clients of the Hive tier: the Spark Thrift Server (HiveServer2 protocol), as the read-only analyst.

The Thrift Server authenticates every login (``hive.server2.authentication=CUSTOM``, see
``deploy/local/thrift_auth.py``); the analyst account of the settings (``mysql.analyst_user`` and
``mysql.analyst_password``) is the one login it knows. It can only read: the platform's own jobs write
the lake through Spark sessions with their own credentials (``core.spark``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from pyhive.hive import Connection


def connect(settings: Settings, *, database: str = "default", user: str | None = None,
            password: str | None = None) -> Connection:
    """A PyHive connection to the Thrift Server, logged in as the analyst (or as ``user``/``password``)."""
    from pyhive import hive

    sp, m = settings.spark, settings.mysql
    return hive.connect(
        host=sp.thrift_host, port=sp.thrift_port, auth="CUSTOM", database=database,
        username=m.analyst_user if user is None else user,
        password=m.analyst_password.get_secret_value() if password is None else password,
    )


def jdbc_url(settings: Settings, database: str | None = None) -> str:
    sp = settings.spark
    return f"jdbc:hive2://{sp.thrift_host}:{sp.thrift_port}/{database or sp.hive_database}"
