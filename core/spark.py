"""Spark configuration shared by every job and by the Thrift Server.

One function says how Spark reaches S3, Kafka and the shared Hive metastore,
so that batch jobs, the streaming job and the Thrift Server see one catalog.
Sessions are built on demand, never at import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core import jars
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def metastore_jdbc_url(settings: Settings) -> str:
    host, port = settings.mysql.server_host_port()
    # useMysqlMetadata: Hive's metastore recognises the server as MySQL and
    # uses its dialect; the MariaDB driver would otherwise report "MariaDB".
    return f"jdbc:mariadb://{host}:{port}/{settings.mysql.metastore_database}?useMysqlMetadata=true&nullDatabaseMeansCurrent=true"


def metastore_credentials(settings: Settings) -> tuple[str, str]:
    mysql = settings.mysql
    user, password = mysql.user, mysql.password.get_secret_value()
    if mysql.url:
        from sqlalchemy.engine import make_url

        url = make_url(mysql.url)
        user, password = url.username or user, url.password or password
    return user, password


def spark_conf(settings: Settings) -> dict[str, str]:
    s3, spark = settings.s3, settings.spark
    user, password = metastore_credentials(settings)
    extra_cp = jars.classpath(settings, "spark")
    conf = {
        "spark.master": spark.master,
        "spark.driver.memory": spark.driver_memory,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # Python workers (mapInArrow) run in this interpreter, with the platform's packages.
        "spark.pyspark.python": sys.executable,
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
        "spark.ui.enabled": str(spark.ui_enabled).lower(),
        "spark.driver.extraClassPath": extra_cp,
        "spark.executor.extraClassPath": extra_cp,
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": settings.warehouse_dir,
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # Shared Hive metastore in MariaDB.
        "spark.hadoop.javax.jdo.option.ConnectionURL": metastore_jdbc_url(settings),
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.mariadb.jdbc.Driver",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": user,
        "spark.hadoop.javax.jdo.option.ConnectionPassword": password,
        # The schema is created once, up front (core.metastore); no process runs DDL on it.
        "spark.hadoop.datanucleus.schema.autoCreateAll": "false",
        "spark.hadoop.hive.metastore.schema.verification": "false",
        # S3A against an S3-compatible server.
        "spark.hadoop.fs.s3a.endpoint": s3.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(s3.endpoint.startswith("https")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": s3.access_key,
        "spark.hadoop.fs.s3a.secret.key": s3.secret_key.get_secret_value(),
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # Single-object deletes: bulk DeleteObjects needs checksum headers that
        # not every S3-compatible server implements.
        "spark.hadoop.fs.s3a.multiobjectdelete.enable": "false",
    }
    if spark.master.startswith("local") and settings.bind_host not in ("0.0.0.0", "::"):
        # A local-mode driver talks only to itself: its RPC and block-manager ports stay on the bind host
        # (loopback) instead of every interface. A cluster's driver keeps the address its executors reach.
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = settings.bind_host
    conf.update(spark.extra_conf)
    return conf


def build_session(settings: Settings, app_name: str) -> "SparkSession":
    """A Hive-enabled session wired to the platform's S3, Kafka jars and metastore."""
    from pyspark.sql import SparkSession

    # PySpark picks the Python of its workers from the environment when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    return builder.enableHiveSupport().getOrCreate()
