"""The services of the local stack, each a real server started as a process.

Every service knows how to prepare its state once, the command that runs it,
how to tell it is truly ready (a real client call, not an open port), and
what to set up once it is (topics, bucket, users, schema).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from core import jars
from core.ray_auth import token_env
from core.settings import PROJECT_ROOT, Settings
from deploy.local.process import ManagedProcess, StackError


@dataclass
class Endpoint:
    setting: str  # the settings field that names this port, for error messages
    host: str
    port: int


class Service:
    name: str = ""
    external_setting: str = ""  # the setting that points at an existing server instead
    ready_timeout: float = 120.0
    depends_on: tuple[str, ...] = ()

    def __init__(self, settings: Settings):
        self.settings = settings
        self.proc = ManagedProcess(
            self.name,
            settings.pid_dir / f"{self.name}.pid",
            settings.log_dir / f"{self.name}.log",
        )

    @property
    def home(self) -> Path:
        return self.settings.runtime_dir / self.name

    @property
    def external(self) -> bool:
        """True when the user points the platform at an existing server instead."""
        return False

    def endpoints(self) -> list[Endpoint]:
        return []

    def describe(self) -> str:
        return ", ".join(f"{e.host}:{e.port}" for e in self.endpoints())

    def prepare(self) -> None:
        """One-time initialisation of the service's state (idempotent)."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the service does not answer a real client call."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Create what the platform needs in the running service (idempotent)."""


def kraft_cluster_id() -> str:
    """A random KRaft cluster id (16 bytes, URL-safe base64) that does not start with '-': the storage tool
    would read such an id as an option (``--cluster-id/-t: expected one argument``), as Kafka's own
    ``random-uuid`` avoids too."""
    while (cluster_id := urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


def _cmdline(pid: int | None) -> list[str]:
    """The command line of a running process (empty if it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, TypeError):
        return []


def java_bin(settings: Settings) -> str:
    from deploy.local.thrift_auth import jdk_tool

    try:
        return jdk_tool(settings, "java", "Java 17+ is missing: run `make install` (it installs "
                        "openjdk-17-jre-headless).")
    except RuntimeError as exc:
        raise StackError(str(exc)) from None


# --------------------------------------------------------------------------- MariaDB
class MariaDB(Service):
    name = "mariadb"
    external_setting = "LAMBDAML_MYSQL__URL"
    ready_timeout = 60.0

    @property
    def external(self) -> bool:
        return self.settings.mysql.external

    @property
    def socket(self) -> Path:
        return self.home / "mysqld.sock"

    def endpoints(self) -> list[Endpoint]:
        host, port = self.settings.mysql.server_host_port()
        return [Endpoint("LAMBDAML_MYSQL__PORT", host, port)]

    def prepare(self) -> None:
        datadir = self.home / "data"
        if (datadir / "mysql").is_dir():
            return
        install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not install_db:
            raise StackError("mariadb-server is missing: run `make install` (apt-get install mariadb-server).")
        datadir.mkdir(parents=True, exist_ok=True)
        cmd = [
            install_db, "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
            "--skip-test-db", "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(datadir, ignore_errors=True)
            raise StackError(f"mariadb-install-db failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        mysqld = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
        if not mysqld:
            raise StackError("mariadbd is missing: run `make install` (apt-get install mariadb-server).")
        m = self.settings.mysql
        argv = [
            mysqld, "--no-defaults",
            f"--datadir={self.home / 'data'}",
            f"--port={m.port}",
            f"--bind-address={self.settings.bind_host}",
            f"--socket={self.socket}",
            f"--pid-file={self.home / 'mariadbd.pid'}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            f"--innodb-buffer-pool-size={m.buffer_pool}",
            "--max-connections=300",
            "--log-error",  # to stderr, i.e. the service log
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv, self.settings.child_env()

    def _root(self):
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2, autocommit=True)

    def check(self) -> None:
        if self.external:
            from sqlalchemy import create_engine, text

            engine = create_engine(self.settings.mysql.sqlalchemy_url(), pool_pre_ping=True)
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()
            return
        with self._root() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def after_ready(self) -> None:
        if not self.external:
            self._bootstrap_users()
        from core import migrate

        migrate.apply(self.settings)

    def _bootstrap_users(self) -> None:
        m = self.settings.mysql
        statements = [
            ("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4", dict(db=m.database)),
            # Hive's own MySQL scripts use latin1: utf8mb4 keys overflow its index limits.
            ("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET latin1", dict(db=m.metastore_database)),
        ]
        with self._root() as conn, conn.cursor() as cur:
            for sql, names in statements:
                cur.execute(sql.format(**names))
            for user, password in (
                (m.user, m.password.get_secret_value()),
                (m.analyst_user, m.analyst_password.get_secret_value()),
            ):
                for host in ("localhost", "127.0.0.1", "%"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute(f"GRANT ALL PRIVILEGES ON `{m.database}`.* TO %s@%s", (m.user, host))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{m.metastore_database}`.* TO %s@%s", (m.user, host))
                cur.execute(f"GRANT SELECT, SHOW VIEW ON `{m.database}`.* TO %s@%s", (m.analyst_user, host))
            # The Thrift Server's metastore login: it reads the catalog and can change nothing in it.
            reader, reader_password = m.metastore_reader_user, m.metastore_reader_password.get_secret_value()
            if reader in (m.user, m.analyst_user):
                raise StackError("LAMBDAML_MYSQL__METASTORE_READER_USER must be an account of its own: the Thrift "
                                 "Server's metastore login gets SELECT on the metastore and nothing else")
            select_only = {f"GRANT SELECT ON `{m.metastore_database}`.* TO `{reader}`@`{{host}}`"}
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (reader, host, reader_password))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (reader, host, reader_password))
                cur.execute("SHOW GRANTS FOR %s@%s", (reader, host))
                grants = {g for (g,) in cur.fetchall() if not g.startswith("GRANT USAGE ON *.* TO")}
                if grants - {g.format(host=host) for g in select_only}:  # more than SELECT: take it all back
                    cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (reader, host))
                cur.execute(f"GRANT SELECT ON `{m.metastore_database}`.* TO %s@%s", (reader, host))
            cur.execute("FLUSH PRIVILEGES")


# --------------------------------------------------------------------------- S3 (versitygw)
class S3Server(Service):
    """Versity S3 Gateway over a plain directory (posix backend, metadata in a sidecar folder)."""

    name = "s3"
    external_setting = "LAMBDAML_S3__ENDPOINT_URL"
    ready_timeout = 60.0

    @property
    def external(self) -> bool:
        return self.settings.s3.external

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("LAMBDAML_S3__PORT", self.settings.s3.host, self.settings.s3.port)]

    def describe(self) -> str:
        return self.settings.s3.endpoint

    @property
    def iam_dir(self) -> Path:
        return self.home / "iam"

    def prepare(self) -> None:
        for sub in ("data", "meta", "iam"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.iam_dir.chmod(0o700)  # it holds the accounts' secrets

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core import s3server

        binary = s3server.binary_path(self.settings)
        if not binary.exists():
            raise StackError(f"the S3 server ({binary.name}) is not built: run `make install` (lambdaml install).")
        s3 = self.settings.s3
        argv = [
            str(binary), "--port", f"{self.settings.bind_host}:{s3.port}", "--region", s3.region,
            "--quiet", "--health", "/health",
            # Accounts besides root (the Thrift Server's read-only key) live in the internal IAM; uncached, so
            # a changed secret holds at once (the cache kept serving an account's old secret after an update).
            "--iam-dir", str(self.iam_dir), "--iam-cache-disable",
            "posix", "--sidecar", str(self.home / "meta"), str(self.home / "data"),
        ]
        # Credentials travel by environment, not on the command line.
        env = self.settings.child_env(
            ROOT_ACCESS_KEY_ID=s3.access_key, ROOT_SECRET_ACCESS_KEY=s3.secret_key.get_secret_value()
        )
        return argv, env

    def check(self) -> None:
        from core.s3 import s3_client

        s3_client(self.settings).list_buckets()

    def after_ready(self) -> None:
        from core import s3server
        from core.s3 import ensure_bucket

        ensure_bucket(self.settings)
        try:
            if self.external:
                # An external versitygw (the compose and Kubernetes layouts) gets the account through its
                # admin API like the local one; any other S3 needs a read-only key made by its owner.
                try:
                    s3server.check_reader(self.settings)
                    return
                except Exception as exc:  # noqa: BLE001 - whatever failed, try to create the account once
                    try:
                        s3server.ensure_reader(self.settings)
                    except Exception:  # noqa: BLE001 - not a versitygw with IAM: report the key's own failure
                        raise exc from None
            else:
                s3server.ensure_reader(self.settings)
            # The Thrift Server's key must read the lake and be refused a write.
            s3server.check_reader(self.settings)
        except Exception as exc:  # noqa: BLE001 - HTTP and S3 client errors alike: the stack cannot go on
            if not self.external and "--iam-dir" not in _cmdline(self.proc.pid()):
                raise StackError(f"{exc}\nThe running S3 server was started without its IAM folder: restart it "
                                 "(`lambdaml stack down --only s3` and `lambdaml stack up`).") from exc
            raise StackError(str(exc)) from exc


# --------------------------------------------------------------------------- Kafka (KRaft)
class Kafka(Service):
    name = "kafka"
    external_setting = "LAMBDAML_KAFKA__BOOTSTRAP_SERVERS"
    ready_timeout = 90.0

    @property
    def external(self) -> bool:
        return self.settings.kafka.external

    def endpoints(self) -> list[Endpoint]:
        k = self.settings.kafka
        return [
            Endpoint("LAMBDAML_KAFKA__PORT", k.host, k.port),
            Endpoint("LAMBDAML_KAFKA__CONTROLLER_PORT", k.host, k.controller_port),
        ]

    def describe(self) -> str:
        return self.settings.kafka.bootstrap

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java_bin(self.settings), f"-Xmx{self.settings.kafka.heap}", "-Xms128m",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp", jars.classpath(self.settings, "kafka"), main, *args,
        ]

    def prepare(self) -> None:
        k = self.settings.kafka
        host = self.settings.bind_host
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            textwrap.dedent(
                f"""\
                process.roles=broker,controller
                node.id=1
                listeners=PLAINTEXT://{host}:{k.port},CONTROLLER://{host}:{k.controller_port}
                advertised.listeners=PLAINTEXT://{k.host}:{k.port}
                controller.listener.names=CONTROLLER
                inter.broker.listener.name=PLAINTEXT
                listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
                controller.quorum.bootstrap.servers={host}:{k.controller_port}
                log.dirs={self.home / 'data'}
                num.partitions={k.partitions}
                default.replication.factor=1
                offsets.topic.replication.factor=1
                transaction.state.log.replication.factor=1
                transaction.state.log.min.isr=1
                share.coordinator.state.topic.replication.factor=1
                share.coordinator.state.topic.min.isr=1
                group.initial.rebalance.delay.ms=0
                auto.create.topics.enable=false
                log.retention.hours=168
                """
            )
        )
        (self.home / "log4j2.properties").write_text(_KAFKA_LOG4J2)
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = kraft_cluster_id()
        argv = self._java(
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties_file), "--standalone"
        )
        result = subprocess.run(argv, capture_output=True, text=True, env=self.settings.child_env())
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self._java("kafka.Kafka", str(self.properties_file)), self.settings.child_env()

    def check(self) -> None:
        from confluent_kafka.admin import AdminClient

        # log_level 0: refused connections while the broker starts are expected.
        admin = AdminClient({"bootstrap.servers": self.settings.kafka.bootstrap, "log_level": 0})
        meta = admin.list_topics(timeout=3)
        if not meta.brokers:
            raise RuntimeError("no broker in metadata")

    def after_ready(self) -> None:
        from core.kafka import ensure_topics

        ensure_topics(self.settings)


# --------------------------------------------------------------------------- Spark Thrift Server
class ThriftServer(Service):
    name = "thrift"
    external_setting = "LAMBDAML_SPARK__THRIFT_EXTERNAL (with _THRIFT_HOST/_THRIFT_PORT)"
    ready_timeout = 180.0
    depends_on = ("mariadb", "s3")

    @property
    def external(self) -> bool:
        return self.settings.spark.thrift_external

    def endpoints(self) -> list[Endpoint]:
        sp = self.settings.spark
        return [Endpoint("LAMBDAML_SPARK__THRIFT_PORT", sp.thrift_host, sp.thrift_port)]

    @property
    def passwords_file(self) -> Path:
        """The logins the server accepts (hashes only, mode 0600), read at every login."""
        return self.home / "auth" / "passwords"

    def prepare(self) -> None:
        from core import metastore
        from deploy.local import thrift_auth

        self.home.mkdir(parents=True, exist_ok=True)
        try:
            thrift_auth.build(self.settings)
            metastore.create_schema(self.settings, self.home / "metastore", java_bin(self.settings))
            # What the read-only server cannot create itself, created with the platform's credentials.
            metastore.ensure_catalog(self.settings, self.home / "catalog-init")
            metastore.check_reader(self.settings)
        except RuntimeError as exc:
            raise StackError(str(exc)) from exc
        thrift_auth.write_password_file(self.passwords_file, thrift_auth.thrift_users(self.settings))

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core.spark import spark_conf, spark_home
        from deploy.local import thrift_auth

        home = spark_home()
        m, s3 = self.settings.mysql, self.settings.s3
        conf = spark_conf(self.settings)
        conf["spark.driver.memory"] = self.settings.spark.thrift_driver_memory
        conf["spark.master"] = self.settings.spark.thrift_master or conf["spark.master"]
        # The analysts' server reads with credentials that cannot write: a metastore login with SELECT
        # only, and an S3 key the bucket's policy lets only read. No setting of its own may widen them.
        for key in [k for k in conf if re.fullmatch(r"spark\.hadoop\.fs\.s3a\.bucket\..+\.(access\.key|"
                                                       r"secret\.key|session\.token|aws\.credentials\.provider)", k)]:
            del conf[key]
        conf.update({
            "spark.hadoop.javax.jdo.option.ConnectionUserName": m.metastore_reader_user,
            "spark.hadoop.javax.jdo.option.ConnectionPassword": m.metastore_reader_password.get_secret_value(),
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "spark.hadoop.fs.s3a.access.key": s3.reader_access_key,
            "spark.hadoop.fs.s3a.secret.key": s3.reader_secret_key.get_secret_value(),
            # The guard refuses writes with an error that says so, before the credentials would.
            "spark.sql.extensions": ",".join(filter(None, [conf.get("spark.sql.extensions"), thrift_auth.GUARD])),
            "spark.driver.extraClassPath": ":".join(
                filter(None, [str(thrift_auth.jar_path(self.settings)), conf.get("spark.driver.extraClassPath")])),
            # Reading a table never writes an inferred schema back to the metastore.
            "spark.sql.hive.caseSensitiveInferenceMode": "INFER_ONLY",
            "spark.sql.runSQLOnFiles": "false",
        })
        argv = [str(home / "bin" / "spark-submit"), "--class",
                "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "--name", "lambdaml-thrift-server"]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        argv += [
            "spark-internal",
            "--hiveconf", f"hive.server2.thrift.port={self.settings.spark.thrift_port}",
            "--hiveconf", f"hive.server2.thrift.bind.host={self.settings.bind_host}",
            # Every login is checked against the password file (SASL PLAIN): no anonymous access.
            "--hiveconf", "hive.server2.authentication=CUSTOM",
            "--hiveconf", f"hive.server2.custom.authentication.class={thrift_auth.AUTHENTICATOR}",
            "--hiveconf", f"{thrift_auth.FILE_PROPERTY}={self.passwords_file}",
        ]
        env = self.settings.child_env(SPARK_HOME=str(home))
        # Keep Derby's log and Spark's scratch space out of the working tree.
        return argv, env

    def check(self) -> None:
        from core import hive

        conn = hive.connect(self.settings)
        try:
            cur = conn.cursor()
            cur.execute("SHOW DATABASES")
            cur.fetchall()
        finally:
            conn.close()

    def after_ready(self) -> None:
        from core import metastore
        from deploy.local import thrift_auth

        try:
            # The lake's database, created with the platform's credentials (the server itself cannot).
            metastore.ensure_catalog(self.settings, self.home / "catalog-init")
        except RuntimeError as exc:
            raise StackError(str(exc)) from exc
        if not self.external:
            # Read at every login: a changed analyst password holds from now on, without a restart.
            thrift_auth.write_password_file(self.passwords_file, thrift_auth.thrift_users(self.settings))


# --------------------------------------------------------------------------- Airflow
class Airflow(Service):
    name = "airflow"
    ready_timeout = 240.0

    def endpoints(self) -> list[Endpoint]:
        a = self.settings.airflow
        return [
            Endpoint("LAMBDAML_AIRFLOW__PORT", a.host, a.port),
            Endpoint("LAMBDAML_AIRFLOW__WORKER_LOG_PORT", a.host, a.worker_log_port),
            Endpoint("LAMBDAML_AIRFLOW__TRIGGER_LOG_PORT", a.host, a.trigger_log_port),
        ]

    def describe(self) -> str:
        a = self.settings.airflow
        # The documented local default is shown; a password set in the settings never is.
        default = type(a).model_fields["admin_password"].default.get_secret_value()
        shown = default if a.admin_password.get_secret_value() == default else "<LAMBDAML_AIRFLOW__ADMIN_PASSWORD>"
        return f"{a.url}  (login {a.admin_user} / {shown})"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        a = self.settings.airflow
        self.passwords_file.write_text(json.dumps({a.admin_user: a.admin_password.get_secret_value()}))
        self.passwords_file.chmod(0o600)

    def env(self) -> dict[str, str]:
        return airflow_env(self.settings)

    def command(self) -> tuple[list[str], dict[str, str]]:
        import sys

        airflow = Path(sys.executable).parent / "airflow"
        return [str(airflow), "standalone"], self.env()

    def check(self) -> None:
        import urllib.request

        with urllib.request.urlopen(f"{self.settings.airflow.url}/api/v2/monitor/health", timeout=3) as resp:
            health = json.load(resp)
        components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        bad = {c: (health.get(c) or {}).get("status") for c in components}
        bad = {c: s for c, s in bad.items() if s != "healthy"}
        if bad:
            raise RuntimeError(f"not healthy yet: {bad}")


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment under which every Airflow process (and thus every task) runs."""
    a = settings.airflow
    home = settings.runtime_dir / "airflow"
    import sys

    env = settings.child_env()
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        # standalone spawns `airflow <component>` by name.
        PATH=os.pathsep.join([venv_bin, env.get("PATH", "")]),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(a.dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{a.admin_user}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "simple_auth_manager_passwords.json"),
        AIRFLOW__API__HOST=a.host,
        AIRFLOW__API__PORT=str(a.port),
        AIRFLOW__API__BASE_URL=a.url,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{a.url}/execution/",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        # Log servers of the scheduler and triggerer: off the standard 8793/8794.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(a.worker_log_port),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(a.trigger_log_port),
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        LAMBDAML_RUNTIME_DIR=str(settings.runtime_dir),
    )
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env:
        # The default SQLite file: wait for its one writer instead of failing after 5 s (see airflow_db).
        env.update(AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS="deploy.local.airflow_db.SYNC",
                   AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC="deploy.local.airflow_db.ASYNC")
    return env


# =========================================================================== the cluster profile
# `LAMBDAML_PROFILE=cluster`: the same platform on real multi-process clusters on this machine.
# Each node is one service (its own pid file and log), so `stack status` shows every node and a
# broker can be stopped by its pid. The settings object derives the addresses the jobs use.


class KafkaBroker(Kafka):
    """One node of a KRaft cluster: broker and controller in one process; the controllers form a quorum."""

    index: int = 0

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def home(self) -> Path:
        return self.settings.runtime_dir / "kafka-cluster" / f"node-{self.node_id}"

    def endpoints(self) -> list[Endpoint]:
        k = self.settings.kafka
        return [
            Endpoint("LAMBDAML_KAFKA__PORT (broker i on PORT + 2*i)", k.host, k.broker_port(self.index)),
            Endpoint("LAMBDAML_KAFKA__CONTROLLER_PORT (node i on PORT + 2*i)", k.host,
                     k.broker_controller_port(self.index)),
        ]

    def describe(self) -> str:
        return f"{self.settings.kafka.host}:{self.settings.kafka.broker_port(self.index)} (node {self.node_id})"

    @property
    def cluster_id_file(self) -> Path:
        return self.settings.runtime_dir / "kafka-cluster" / "cluster.id"

    def prepare(self) -> None:
        k = self.settings.kafka
        host = self.settings.bind_host
        n = k.brokers
        voters = ",".join(f"{i + 1}@{host}:{k.broker_controller_port(i)}" for i in range(n))
        rf = min(k.replication_factor, n)
        isr = min(k.min_insync_replicas, rf)
        port, controller = k.broker_port(self.index), k.broker_controller_port(self.index)
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            textwrap.dedent(
                f"""\
                process.roles=broker,controller
                node.id={self.node_id}
                listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
                advertised.listeners=PLAINTEXT://{k.host}:{k.broker_port(self.index)}
                controller.listener.names=CONTROLLER
                inter.broker.listener.name=PLAINTEXT
                listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
                controller.quorum.voters={voters}
                log.dirs={self.home / 'data'}
                num.partitions={k.partitions}
                default.replication.factor={rf}
                min.insync.replicas={isr}
                offsets.topic.replication.factor={rf}
                transaction.state.log.replication.factor={rf}
                transaction.state.log.min.isr={isr}
                share.coordinator.state.topic.replication.factor={rf}
                share.coordinator.state.topic.min.isr={isr}
                unclean.leader.election.enable=false
                group.initial.rebalance.delay.ms=0
                auto.create.topics.enable=false
                log.retention.hours=168
                """
            )
        )
        (self.home / "log4j2.properties").write_text(_KAFKA_LOG4J2)
        if (self.home / "data" / "meta.properties").exists():
            return
        # Every node of one cluster is formatted with the same id.
        self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
        # An id that starts with '-' (written before kraft_cluster_id guarded it) never formatted a node: replace it.
        if not self.cluster_id_file.exists() or self.cluster_id_file.read_text().strip().startswith("-"):
            self.cluster_id_file.write_text(kraft_cluster_id())
        cluster_id = self.cluster_id_file.read_text().strip()
        argv = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties_file))
        result = subprocess.run(argv, capture_output=True, text=True, env=self.settings.child_env())
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage of node {self.node_id} failed:\n"
                             f"{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def check(self) -> None:
        from confluent_kafka.admin import AdminClient

        k = self.settings.kafka
        admin = AdminClient({"bootstrap.servers": f"{k.host}:{k.broker_port(self.index)}", "log_level": 0})
        meta = admin.list_topics(timeout=3)
        if self.node_id not in meta.brokers:
            raise RuntimeError(f"broker {self.node_id} is not registered in the cluster yet")
        if meta.controller_id < 0:
            raise RuntimeError("no active controller yet")

    def after_ready(self) -> None:
        # Topics need every replica's broker registered: the last node creates them.
        if self.index == self.settings.kafka.brokers - 1:
            from core.kafka import ensure_topics

            ensure_topics(self.settings)


_KAFKA_LOG4J2 = textwrap.dedent(
    """\
    status = warn
    appender.console.type = Console
    appender.console.name = STDOUT
    appender.console.layout.type = PatternLayout
    appender.console.layout.pattern = [%d] %p %m (%c)%n
    rootLogger.level = INFO
    rootLogger.appenderRef.stdout.ref = STDOUT
    logger.kafka.name = kafka
    logger.kafka.level = WARN
    logger.apache.name = org.apache.kafka
    logger.apache.level = WARN
    """
)


def _spark_daemon_env(settings: Settings, home: Path) -> dict[str, str]:
    import sys

    from core.spark import spark_home

    return settings.child_env(
        SPARK_HOME=str(spark_home()),
        SPARK_DAEMON_MEMORY="256m",
        SPARK_LOG_DIR=str(home / "logs"),
        SPARK_LOCAL_DIRS=str(home / "tmp"),
        # Executors run the platform's Python functions: the same interpreter, the project importable.
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.load(resp)


class SparkMaster(Service):
    """Spark standalone master (org.apache.spark.deploy.master.Master from pyspark's own jars)."""

    name = "spark-master"
    ready_timeout = 90.0

    def endpoints(self) -> list[Endpoint]:
        c = self.settings.cluster
        return [Endpoint("LAMBDAML_CLUSTER__SPARK_MASTER_PORT", "127.0.0.1", c.spark_master_port),
                Endpoint("LAMBDAML_CLUSTER__SPARK_MASTER_WEBUI_PORT", "127.0.0.1", c.spark_master_webui_port)]

    def describe(self) -> str:
        c = self.settings.cluster
        return f"{c.spark_master_url}  (UI http://127.0.0.1:{c.spark_master_webui_port})"

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core.spark import spark_home

        c = self.settings.cluster
        argv = [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                "--host", self.settings.bind_host, "--port", str(c.spark_master_port),
                "--webui-port", str(c.spark_master_webui_port)]
        return argv, _spark_daemon_env(self.settings, self.home)

    def state(self) -> dict:
        return _get_json(f"http://127.0.0.1:{self.settings.cluster.spark_master_webui_port}/json/")

    def check(self) -> None:
        status = self.state().get("status")
        if status != "ALIVE":
            raise RuntimeError(f"master status {status}")


class SparkWorker(Service):
    """One Spark standalone worker, registered with the master."""

    index: int = 0
    depends_on = ("spark-master",)
    ready_timeout = 90.0

    @property
    def port(self) -> int:
        return self.settings.cluster.spark_worker_port + 2 * self.index

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("LAMBDAML_CLUSTER__SPARK_WORKER_PORT (worker i on PORT + 2*i)", "127.0.0.1", self.port),
                Endpoint("LAMBDAML_CLUSTER__SPARK_WORKER_PORT (worker i UI on PORT + 2*i + 1)", "127.0.0.1",
                         self.port + 1)]

    def describe(self) -> str:
        c = self.settings.cluster
        return f"127.0.0.1:{self.port}  ({c.spark_worker_cores} cores, {c.spark_worker_memory})"

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core.spark import spark_home

        c = self.settings.cluster
        argv = [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                "--host", self.settings.bind_host, "--port", str(self.port), "--webui-port", str(self.port + 1),
                "--cores", str(c.spark_worker_cores), "--memory", c.spark_worker_memory,
                "--work-dir", str(self.home / "work"), c.spark_master_url]
        return argv, _spark_daemon_env(self.settings, self.home)

    def check(self) -> None:
        workers = SparkMaster(self.settings).state().get("workers", [])
        if not any(w.get("port") == self.port and w.get("state") == "ALIVE" for w in workers):
            raise RuntimeError(f"worker on port {self.port} is not registered with the master")


_RAY_START_NICE = -15 if os.geteuid() == 0 else 0


def _ray_bin() -> str:
    import sys

    return str(Path(sys.executable).parent / "ray")


class RayNode(Service):
    """One Ray node started with `ray start --block` (head or worker)."""

    index: int = 0  # 0: the head
    ready_timeout = 900.0

    @property
    def _base(self) -> int:
        return self.settings.cluster.ray_port + 10 * self.index

    def endpoints(self) -> list[Endpoint]:
        c = self.settings.cluster
        ports = [c.ray_port, c.ray_port + 1] if self.index == 0 else []
        ports += [self._base + 2 + i for i in range(6)]
        return [Endpoint("LAMBDAML_CLUSTER__RAY_PORT", "127.0.0.1", p) for p in ports]

    @property
    def _local(self) -> bool:
        """The local profile's one node: a head sized by the ``ray`` settings, its processes at the batch layer's
        niceness. In the cluster profile, nodes are sized by the ``cluster`` settings."""
        return self.settings.profile != "cluster"

    def _cpus(self) -> int:
        c = self.settings.cluster
        return self.settings.ray.num_cpus if self._local else c.ray_head_cpus if self.index == 0 else c.ray_worker_cpus

    def describe(self) -> str:
        role = "head" if self.index == 0 else "worker"
        return f"{self.settings.ray_head_address} ({role}, {self._cpus()} CPU)"

    def command(self) -> tuple[list[str], dict[str, str]]:
        c = self.settings.cluster
        host = self.settings.bind_host
        b = self._base
        # The raylet gives its agents ~15 s to come up, too short for their imports on a busy 2-core machine:
        # the node starts at a raised priority (lowered once it is ready, in after_ready) under a supervisor
        # that starts it again if it fails while starting.
        import sys

        argv = ["nice", "-n", str(_RAY_START_NICE), sys.executable, "-m", "deploy.local.ray_node", "--",
                "--disable-usage-stats", f"--node-ip-address={host}",
                f"--object-store-memory={c.ray_object_store_bytes}",
                f"--node-manager-port={b + 2}", f"--object-manager-port={b + 3}",
                f"--metrics-export-port={b + 4}", f"--dashboard-agent-listen-port={b + 5}",
                f"--dashboard-agent-grpc-port={b + 6}", f"--runtime-env-agent-port={b + 7}",
                # Worker processes take ports from a range of their own, clear of the other services.
                f"--min-worker-port={c.ray_port + 100 * (self.index + 1)}",
                f"--max-worker-port={c.ray_port + 100 * (self.index + 1) + 99}"]
        if self._local:  # trials' data goes through the object store: Ray's default size, as a search's own Ray
            argv = [a for a in argv if not a.startswith("--object-store-memory=")]
            gpus = self.settings.ray.num_gpus
            argv += [] if gpus is None else [f"--num-gpus={gpus}"]  # unset: Ray counts the GPUs it sees
        else:
            argv += ["--num-gpus=0"]
        if self.index == 0:
            argv += ["--head", f"--port={c.ray_port}", f"--ray-client-server-port={c.ray_port + 1}",
                     f"--dashboard-port={c.ray_port + 8}",
                     "--include-dashboard=false", f"--num-cpus={self._cpus()}",
                     f"--temp-dir={self.settings.runtime_dir / 'ray'}"]
        else:
            argv += [f"--address={self.settings.ray_head_address}", f"--num-cpus={self._cpus()}"]
        env = self.settings.child_env(
            # Trials import the platform's modules.
            PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            RAY_USAGE_STATS_ENABLED="0",
            # Ray starts several Python helpers per node; compiled once into a bytecode cache outside the
            # clone, they import in a third of the time (this matters for the agents' deadline).
            PYTHONPYCACHEPREFIX=str(self.settings.cache_dir / "pycache"),
            PYTHONDONTWRITEBYTECODE="",
            **token_env(self.settings),  # Ray's ports listen on every interface: drivers need the token
            # On a busy machine the node agents take long to start; the raylet waits for them.
            RAY_agent_register_timeout_ms="300000",
            RAY_raylet_start_wait_time_s="300",
        )
        return argv, env

    def after_ready(self) -> None:
        pid = self.proc.pid()
        if pid is None:
            return
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit():
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
                continue
        tree, grew = {pid}, True
        while grew:
            more = {p for p, parent in parents.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        # The node and every process it started (and so every trial it starts later) at the priority it runs at:
        # normal on a cluster node; in the local stack, the batch layer's, below the speed layer's.
        nice = self.settings.batch.cpu_nice if self._local else 0
        for member in tree:
            try:
                os.setpriority(os.PRIO_PROCESS, member, nice)
            except (ProcessLookupError, PermissionError):
                continue

    def nodes(self) -> int:
        """Alive nodes in the cluster, as the GCS reports them."""
        result = subprocess.run([_ray_bin(), "status", f"--address={self.settings.ray_head_address}"],
                                capture_output=True, text=True, timeout=60,
                                env=self.settings.child_env(**token_env(self.settings)))
        if result.returncode != 0:
            raise RuntimeError((result.stderr or result.stdout).strip().splitlines()[-1:] or "ray status failed")
        if "Active:" not in result.stdout:
            raise RuntimeError(result.stdout.strip()[:200] or "no cluster status yet")
        active = result.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def check(self) -> None:
        if self.nodes() < self.index + 1:
            raise RuntimeError("the node has not joined the cluster yet")


def _node(base: type[Service], name: str, index: int, **attrs) -> type[Service]:
    return type(f"{base.__name__}{index}", (base,), {"name": name, "index": index, **attrs})


# The local profile: one process each, and a standing Ray head that searches join (``ray.local_head``).
RayHead = _node(RayNode, "ray-head", 0)
ALL_SERVICES: tuple[type[Service], ...] = (MariaDB, S3Server, Kafka, RayHead, ThriftServer, Airflow)


def services_for(settings: Settings) -> tuple[type[Service], ...]:
    """The services of the stack these settings describe: one process each."""
    if settings.profile != "cluster":
        head = settings.ray.local_head and not settings.ray.address  # an address: searches run elsewhere
        return tuple(s for s in ALL_SERVICES if s is not RayHead or head)
    c = settings.cluster
    kafka = (Kafka,) if settings.kafka.external else tuple(
        _node(KafkaBroker, f"kafka-{i + 1}", i) for i in range(settings.kafka.brokers))
    spark = (SparkMaster,) + tuple(_node(SparkWorker, f"spark-worker-{i + 1}", i) for i in range(c.spark_workers))
    ray = (RayHead, _node(RayNode, "ray-worker", 1, depends_on=("ray-head",)))
    return (MariaDB, S3Server, *kafka, *spark, *ray, ThriftServer, Airflow)
