"""The Hive metastore schema in MySQL, created once and up front.

Left to itself, Hive's DataNucleus layer creates metastore tables lazily, the
first time each kind of object is stored. When two processes (a Spark job and
the Thrift Server) do that at once, their DDL waits on each other's metadata
locks in MySQL and both hang. So the whole schema is created in one step,
with DataNucleus' SchemaTool over Hive's own JDO mapping, before any Spark
process starts; sessions then run with schema auto-creation off.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from core import jars
from core.settings import Settings
from core.spark import metastore_credentials, metastore_jdbc_url, spark_home

# Hive 2.3's metastore defaults for DataNucleus; the schema must be made with the same.
DATANUCLEUS_PROPS = {
    "datanucleus.identifierFactory": "datanucleus1",
    "datanucleus.rdbms.useLegacyNativeValueStrategy": "true",
    "datanucleus.storeManagerType": "rdbms",
    "datanucleus.schema.autoCreateAll": "true",
}


def schema_exists(settings: Settings) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    user, password = metastore_credentials(settings)
    host, port = settings.mysql.server_host_port()
    url = make_url(f"mysql+pymysql://{host}:{port}").set(
        username=user, password=password, database=settings.mysql.metastore_database
    )
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            found = conn.execute(
                text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = :db AND table_name IN ('DBS', 'TBLS', 'VERSION')"),
                {"db": settings.mysql.metastore_database},
            ).scalar()
        return found == 3
    finally:
        eng.dispose()


def create_schema(settings: Settings, workdir: Path, java: str) -> None:
    """Create every metastore table, index and constraint in one go (idempotent)."""
    if schema_exists(settings):
        return
    workdir.mkdir(parents=True, exist_ok=True)
    hive_jar = next((spark_home() / "jars").glob("hive-metastore-*.jar"))
    with zipfile.ZipFile(hive_jar) as zf:
        (workdir / "package.jdo").write_bytes(zf.read("package.jdo"))
    user, password = metastore_credentials(settings)
    props = {
        "javax.jdo.option.ConnectionURL": metastore_jdbc_url(settings),
        "javax.jdo.option.ConnectionDriverName": "org.mariadb.jdbc.Driver",
        "javax.jdo.option.ConnectionUserName": user,
        "javax.jdo.option.ConnectionPassword": password,
        **DATANUCLEUS_PROPS,
    }
    props_file = workdir / "metastore-schema.properties"
    props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    props_file.chmod(0o600)
    classpath = f"{spark_home() / 'jars' / '*'}:{jars.classpath(settings, 'spark')}"
    cmd = [java, "-cp", classpath, "org.datanucleus.store.schema.SchemaTool", "-create", "-api", "JDO",
           "-props", str(props_file), str(workdir / "package.jdo")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
    if result.returncode != 0 or not schema_exists(settings):
        raise RuntimeError(f"creating the Hive metastore schema failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


# ----------------------------------------------------------------------------- the catalog the readers need
# The Thrift Server logs in to the metastore with SELECT only (``mysql.metastore_reader_user``). When Hive's
# metastore starts it creates the `default` database and the `admin` and `public` roles if they are
# missing, and it cannot with that login: the platform creates them first, with its own credentials, and
# the Hive database of the lake (`spark.hive_database`) with them.

READER_PRIVILEGES = {"SELECT", "USAGE", "SHOW VIEW"}


def _engine(settings: Settings, user: str, password: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    host, port = settings.mysql.server_host_port()
    url = make_url(f"mysql+pymysql://{host}:{port}").set(
        username=user, password=password, database=settings.mysql.metastore_database)
    return create_engine(url, connect_args={"connect_timeout": 5})


def catalog_missing(settings: Settings) -> list[str]:
    """What the read-only Thrift Server needs in the metastore and does not find there."""
    from sqlalchemy import text

    eng = _engine(settings, *metastore_credentials(settings))
    try:
        with eng.connect() as conn:
            databases = {r[0].lower() for r in conn.execute(text("SELECT NAME FROM DBS"))}
            roles = {r[0] for r in conn.execute(text("SELECT ROLE_NAME FROM ROLES"))}
    finally:
        eng.dispose()
    wanted_dbs = ("default", settings.spark.hive_database.lower())
    return ([f"database {d}" for d in wanted_dbs if d not in databases]
            + [f"role {r}" for r in ("admin", "public") if r not in roles])


def _init_catalog() -> None:
    """Run in a child process: a Spark session with the platform's credentials creates what is missing."""
    from core.settings import get_settings
    from core.spark import build_session

    settings = get_settings()
    spark = build_session(settings, "lambdaml-catalog-init")
    try:
        # Starting the session's catalog creates `default` and the roles; this adds the lake's database.
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.spark.hive_database}")
    finally:
        spark.stop()


def ensure_catalog(settings: Settings, workdir: Path) -> list[str]:
    """Create the databases and roles the Thrift Server needs, with the platform's credentials (idempotent).

    Returns what was missing. The work runs in a child process, so that no JVM stays in this one.
    """
    import os
    import sys

    from core.settings import PROJECT_ROOT

    missing = catalog_missing(settings)
    if not missing:
        return []
    workdir.mkdir(parents=True, exist_ok=True)
    env = settings.child_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        LAMBDAML_SPARK__MASTER="local[1]", LAMBDAML_SPARK__DRIVER_MEMORY="512m")
    cmd = [sys.executable, "-c", "from core.metastore import _init_catalog; _init_catalog()"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=600)
    still = catalog_missing(settings)
    if result.returncode != 0 or still:
        raise RuntimeError(f"creating {', '.join(still or missing)} in the Hive metastore failed:\n"
                           f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return missing


def reader_privileges(settings: Settings) -> set[str]:
    """The privileges of the Thrift Server's metastore login on the metastore database (and globally)."""
    import re

    from sqlalchemy import text

    m = settings.mysql
    eng = _engine(settings, m.metastore_reader_user, m.metastore_reader_password.get_secret_value())
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT COUNT(*) FROM DBS")).scalar()
            grants = [r[0] for r in conn.execute(text("SHOW GRANTS FOR CURRENT_USER()"))]
    finally:
        eng.dispose()
    privileges: set[str] = set()
    for grant in grants:
        found = re.match(r"GRANT (.+?) ON (\S+) TO", grant)
        if not found:
            continue
        target = found.group(2).replace("`", "")
        if target in ("*.*", f"{m.metastore_database}.*") or target.startswith(f"{m.metastore_database}."):
            privileges |= {p.strip().upper() for p in found.group(1).split(",")}
    return privileges


def check_reader(settings: Settings) -> None:
    """Raise unless the Thrift Server's metastore login can read the metastore and do nothing else there."""
    m = settings.mysql
    if m.metastore_reader_user == metastore_credentials(settings)[0]:
        raise RuntimeError("LAMBDAML_MYSQL__METASTORE_READER_USER is the platform's own MySQL user: the Thrift "
                           "Server needs a login with SELECT only on the metastore")
    try:
        privileges = reader_privileges(settings)
    except Exception as exc:  # noqa: BLE001 - any failure to log in or read is reported the same way
        raise RuntimeError(
            f"the Thrift Server's metastore login {m.metastore_reader_user!r} cannot read {m.metastore_database} "
            f"({str(exc).splitlines()[0][:200]}). Create it with SELECT on `{m.metastore_database}`.* or set "
            "LAMBDAML_MYSQL__METASTORE_READER_USER/_PASSWORD.") from exc
    extra = privileges - READER_PRIVILEGES
    if extra:
        raise RuntimeError(f"the Thrift Server's metastore login {m.metastore_reader_user!r} may do more than read "
                           f"{m.metastore_database} ({', '.join(sorted(extra))}): grant it SELECT only")
