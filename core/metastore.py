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
