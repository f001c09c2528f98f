"""Spark configuration shared by every job and by the Thrift Server.

One function says how Spark reaches S3, Kafka and the shared Hive metastore,
so that batch jobs, the streaming job and the Thrift Server see one catalog.
Sessions are built on demand, never at import.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
        # How long a step waits for an unreachable S3 before it fails (and Airflow retries the task).
        "spark.hadoop.fs.s3a.retry.limit": str(s3.retry_limit),
        "spark.hadoop.fs.s3a.attempts.maximum": str(s3.sdk_attempts),
    }
    if spark.master.startswith("local") and settings.bind_host not in ("0.0.0.0", "::"):
        # A local-mode driver talks only to itself: its RPC and block-manager ports stay on the bind host
        # (loopback) instead of every interface. A cluster's driver keeps the address its executors reach.
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = settings.bind_host
    conf.update(spark.extra_conf)
    return conf


def with_java_options(conf: dict[str, str], options: str) -> dict[str, str]:
    """``conf`` with ``options`` after the driver's and executors' own Java options."""
    if not options.strip():
        return conf
    out = dict(conf)
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        out[key] = " ".join(filter(None, [conf.get(key, "").strip(), options.strip()]))
    return out


def build_session(settings: Settings, app_name: str, java_options: str = "") -> "SparkSession":
    """A Hive-enabled session wired to the platform's S3, Kafka jars and metastore; ``java_options`` go to its
    JVMs (the driver's only when the session starts the JVM, which is how the platform's jobs run)."""
    from pyspark.sql import SparkSession

    # PySpark picks the Python of its workers from the environment when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in with_java_options(spark_conf(settings), java_options).items():
        builder = builder.config(key, value)
    return builder.enableHiveSupport().getOrCreate()


class QueryListener:
    """A streaming query listener that reads each event as the JSON Spark writes of it; register it with
    ``add_listener``. Subclasses override what they need.

    PySpark's own listener adapter turns every progress event into Python objects field by field, over Py4J.
    For the observed metrics it looks ``PythonSQLUtils`` up by its short name, which Py4J resolves by trying
    ``Class.forName`` in each package PySpark imported, and every miss searches the whole classpath (the
    platform's Hive, Hadoop and Kafka jars included). A Java Flight Recording of the scoring job at 200 events/s
    found the driver's listener thread sampled more often than the micro-batch thread itself (79 against 50
    samples in 7 s), nearly all of it in those class searches. This adapter asks the JVM for two things an event:
    the event's progress and its JSON.
    """

    def started(self, query_id: str) -> None:
        """The query started (or restarted)."""

    def progress(self, progress: dict) -> None:
        """A micro-batch ended: ``StreamingQueryProgress`` as JSON (``observedMetrics`` by name, each a dict)."""

    def terminated(self, exception: str | None) -> None:
        """The query stopped; ``exception`` says why when it failed."""


def add_listener(spark: "SparkSession", listener: QueryListener) -> None:
    """Register ``listener`` with the session's streaming queries."""
    import json

    from pyspark import SparkContext
    from pyspark.sql.streaming import StreamingQueryListener

    class Forward:
        """What the JVM calls back (Py4J implements the Java interface with it)."""

        def onQueryStarted(self, jevent) -> None:
            listener.started(jevent.id().toString())

        def onQueryProgress(self, jevent) -> None:
            listener.progress(json.loads(jevent.progress().json()))

        def onQueryIdle(self, jevent) -> None:
            pass

        def onQueryTerminated(self, jevent) -> None:
            exception = jevent.exception()
            listener.terminated(exception.get() if exception.isDefined() else None)

        class Java:
            implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]

    class Adapter(StreamingQueryListener):
        """PySpark's listener type, so ``addListener`` takes it; its Java side is ``Forward``. The methods below
        are the abstract ones PySpark requires, the same calls in its public form: they run only where PySpark
        calls a listener from Python itself (Spark Connect) or stops asking for ``_jlistener``."""

        def onQueryStarted(self, event) -> None:
            listener.started(str(event.id))

        def onQueryProgress(self, event) -> None:
            listener.progress(json.loads(event.progress.json))

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            listener.terminated(event.exception)

        @property
        def _jlistener(self):
            if not hasattr(self, "_forward"):
                self._forward = SparkContext._jvm.PythonStreamingQueryListenerWrapper(Forward())
            return self._forward

    spark.streams.addListener(Adapter())


class StorageUnavailable(RuntimeError):
    """S3 did not answer a Spark step within S3A's retry budget."""


# The AWS SDK's words for a request that never reached the server (S3A wraps them in its own exceptions).
_SDK_UNREACHABLE = re.compile(r"SdkClientException: Unable to execute HTTP request: (?P<cause>[^\n]*?)(?: \(SDK Attempt|\n|$)")


def storage_unreachable_cause(message: str) -> str | None:
    """The connection failure in a Spark error's text when S3 could not be reached, else ``None``."""
    found = _SDK_UNREACHABLE.search(message)
    return found.group("cause").strip() if found else None


@contextmanager
def storage_errors(settings: Settings, step: str) -> Iterator[None]:
    """Turn the JVM's stack trace for an unreachable S3 into an error that says what happened and what to do."""
    try:
        yield
    except Exception as exc:
        cause = storage_unreachable_cause(str(exc))
        if cause is None:
            raise
        s3 = settings.s3
        raise StorageUnavailable(
            f"{step}: the S3 server at {s3.endpoint} did not answer ({cause}) after S3A's retries "
            f"(LAMBDAML_S3__RETRY_LIMIT={s3.retry_limit}, LAMBDAML_S3__SDK_ATTEMPTS={s3.sdk_attempts}). "
            "This step only reads raw data, and it rewrites its own output whole when it runs again. "
            "Check the S3 server (`lambdaml stack status`); Airflow retries the task, or clear it once S3 is back."
        ) from exc
