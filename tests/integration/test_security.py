"""Security checks of the platform on real components.

- The prediction service (real gunicorn, an API key configured): every ``/v1/*`` route needs the
  right ``X-API-Key``; ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` stay open (probes,
  scraping, the contract); size and batch limits hold behind gunicorn; the key never reaches its log.
- ``lambdaml config show`` and a bad-configuration error never print a secret.
- ``lambdaml query`` only runs the named queries of ``sql/queries/`` and binds every value: injection
  attempts change neither the answer nor the database.
- The analyst's MySQL grants are read-only. In Hive too: the Thrift Server refuses a wrong login, reads for the
  analyst (PyHive and beeline), refuses every write or DDL statement with an error that says so and changes
  nothing; its own metastore login and S3 key are refused every write by MariaDB and the S3 server.
- The stack's logs and the repository's tracked files carry no secret (but the documented defaults).
- Every process of the running stack listens on loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from core.settings import PROJECT_ROOT, Settings
from deploy.local.speed import PredictionAPI
from tests.integration.private_speed import TRIP, private_speed

pytestmark = pytest.mark.integration

API_KEY = f"it-key-{secrets.token_hex(16)}"
# empty, one character off (same length), one longer, unrelated
WRONG_KEYS = ("", API_KEY[:-1] + ("0" if API_KEY[-1] != "0" else "1"), API_KEY + "x",
              f"it-wrong-{secrets.token_hex(8)}")
CLI = [sys.executable, "-m", "core.cli"]


# --------------------------------------------------------------------------------------------- prediction service
@pytest.fixture(scope="module")
def keyed(stack, settings, tmp_path_factory):
    with private_speed(settings, tmp_path_factory.mktemp("security-runtime"), port=18120, workers=1, threads=4,
                       api_key=API_KEY, max_body_bytes=4096, max_batch_trips=8) as s:
        yield s


def feature_body(trips: list[dict]) -> dict:
    from core.events import TripRequest
    from speed.predictor import request_columns
    from workloads.taxi import features

    cols = features.compute_numpy(request_columns([TripRequest.model_validate(t) for t in trips]))
    return {"trip_ids": [t["trip_id"] for t in trips], "features": {k: v.tolist() for k, v in cols.items()}}


PROTECTED = [
    ("POST", "/v1/predict", lambda: dict(TRIP, trip_id="sec-1")),
    ("POST", "/v1/predict", lambda: {"trips": [dict(TRIP, trip_id="sec-2"), dict(TRIP, trip_id="sec-3")]}),
    ("POST", "/v1/predict/features", lambda: feature_body([dict(TRIP, trip_id="sec-4")])),
    ("GET", "/v1/models/current", lambda: None),
]
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=lambda v: v if isinstance(v, str) else "")
def test_every_v1_route_needs_the_right_api_key(keyed, method, path, body):
    url = f"{keyed.speed.url}{path}"
    missing = requests.request(method, url, json=body(), timeout=10)
    assert missing.status_code == 401, missing.text
    assert missing.json()["field"] == "X-API-Key" and missing.headers["WWW-Authenticate"] == "ApiKey"
    for wrong in WRONG_KEYS:
        r = requests.request(method, url, json=body(), headers={"X-API-Key": wrong}, timeout=10)
        assert r.status_code == 401, (wrong, r.text)
    right = requests.request(method, url, json=body(), headers={"X-API-Key": API_KEY}, timeout=10)
    assert right.status_code == 200, right.text
    assert "model_version" in right.json() or "version" in right.json()


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_contract_stay_open(keyed, path):
    assert requests.get(f"{keyed.speed.url}{path}", timeout=10).status_code == 200


def test_size_and_batch_limits_hold_behind_gunicorn(keyed):
    url, key = f"{keyed.speed.url}/v1/predict", {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    big = b" " * 5000 + json.dumps(dict(TRIP, trip_id="big")).encode()
    r = requests.post(url, data=big, headers=key, timeout=10)
    assert r.status_code == 413 and r.json()["field"] == "body"
    # The same body without a Content-Length (chunked): the limit holds on what is read.
    r = requests.post(url, data=(big[i:i + 1000] for i in range(0, len(big), 1000)), headers=key, timeout=10)
    assert r.status_code == 413, r.text
    r = requests.post(url, json={"trips": [dict(TRIP, trip_id=f"b{i}") for i in range(9)]}, headers=key, timeout=10)
    assert r.status_code == 413 and r.json()["field"] == "trips"
    r = requests.post(f"{url}/features", json=feature_body([dict(TRIP, trip_id=f"f{i}") for i in range(9)]),
                      headers=key, timeout=10)
    assert r.status_code == 413
    nested = b"[" * 2000 + b"]" * 2000  # within the size limit, deeper than the JSON parser recurses
    r = requests.post(url, data=nested, headers=key, timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert requests.post(url, json=dict(TRIP, trip_id="still-fine"), headers=key, timeout=10).status_code == 200


def test_the_api_key_never_reaches_the_service_log(keyed):
    for wrong in WRONG_KEYS[1:]:  # keys sent by clients are not logged either
        requests.post(f"{keyed.speed.url}/v1/predict", json=TRIP, headers={"X-API-Key": wrong}, timeout=10)
    log = PredictionAPI(keyed).proc.log_file.read_text()
    assert "Booting worker" in log and "serving v1" in log  # the log is the service's, and it is written
    for secret in (API_KEY, *WRONG_KEYS[1:]):
        assert secret not in log


# --------------------------------------------------------------------------------------------- CLI output
SECRET_ENV = {
    "LAMBDAML_SPEED__API_KEY": f"api-{secrets.token_hex(12)}",
    "LAMBDAML_MYSQL__PASSWORD": f"app-{secrets.token_hex(12)}",
    "LAMBDAML_MYSQL__ANALYST_PASSWORD": f"analyst-{secrets.token_hex(12)}",
    "LAMBDAML_MYSQL__METASTORE_READER_PASSWORD": f"reader-{secrets.token_hex(12)}",
    "LAMBDAML_S3__SECRET_KEY": f"s3-{secrets.token_hex(12)}",
    "LAMBDAML_S3__READER_SECRET_KEY": f"s3-reader-{secrets.token_hex(12)}",
    "LAMBDAML_AIRFLOW__ADMIN_PASSWORD": f"airflow-{secrets.token_hex(12)}",
}
URL_PASSWORD = f"url-{secrets.token_hex(12)}"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_config_show_masks_every_secret():
    env = dict(SECRET_ENV, LAMBDAML_MYSQL__URL=f"mysql+pymysql://someone:{URL_PASSWORD}@db.example:3306/lambda",
               LAMBDAML_SPARK__EXTRA_CONF=json.dumps({"spark.hadoop.fs.s3a.secret.key": f"conf-{URL_PASSWORD}"}))
    r = run_cli("config", "show", env=env)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["speed"]["api_key"] == "**********" and shown["mysql"]["password"] == "**********"
    assert shown["mysql"]["url"].startswith("mysql+pymysql://someone:***@db.example")  # still useful
    assert shown["mysql"]["metastore_reader_password"] == shown["s3"]["reader_secret_key"] == "**********"
    for secret in (*SECRET_ENV.values(), URL_PASSWORD):
        assert secret not in r.stdout + r.stderr


def test_a_bad_configuration_error_names_the_setting_but_not_the_secrets():
    # An error of the whole speed section (a queue smaller than a batch) must not echo the section's input.
    env = dict(SECRET_ENV, LAMBDAML_SPEED__MAX_BATCH_TRIPS="100", LAMBDAML_SPEED__MAX_PENDING_TRIPS="10")
    r = run_cli("config", "show", env=env)
    assert r.returncode == 2 and "max_pending_trips" in r.stderr, r.stderr
    for secret in SECRET_ENV.values():
        assert secret not in r.stdout + r.stderr


def test_stack_status_does_not_print_a_configured_password(stack):
    password = SECRET_ENV["LAMBDAML_AIRFLOW__ADMIN_PASSWORD"]
    r = run_cli("stack", "status", env={"LAMBDAML_AIRFLOW__ADMIN_PASSWORD": password})
    assert "airflow" in r.stdout, r.stdout + r.stderr
    assert password not in r.stdout + r.stderr


# --------------------------------------------------------------------------------------------- lambdaml query
@pytest.fixture
def canary(stack, settings, unique):
    """A table of the app's with one row, and the tables of the database: what an injection would change."""
    from sqlalchemy import text

    from core.db import engine

    eng = engine(settings)
    table = f"sec_canary_{unique}"
    with eng.begin() as conn:
        conn.execute(text(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(20))"))
        conn.execute(text(f"INSERT INTO `{table}` VALUES (1, 'intact')"))

    def state() -> tuple[set[str], list]:
        with eng.connect() as conn:
            tables = {r[0] for r in conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"))}
            rows = [tuple(r) for r in conn.execute(text(f"SELECT * FROM `{table}`"))]
        return tables, rows

    yield table, state
    with eng.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS `{table}`"))
    eng.dispose()


def test_query_command_refuses_injection_and_leaves_the_database_unchanged(canary):
    table, state = canary
    tables_before, rows_before = state()
    assert rows_before == [(1, "intact")]
    for name in (f"recent_error_by_zone; DROP TABLE {table}", "../../etc/passwd", "/etc/passwd",
                 "../mysql/001_init", "queries/recent_error_by_zone", "recent_error_by_zone.sql"):
        r = run_cli("query", "sql", name)
        assert r.returncode == 1 and f"no query named {name!r}" in r.stdout, (name, r.stdout, r.stderr)
        assert "root:" not in r.stdout  # nothing of the named file was read out
    r = run_cli("query", "sql", "recent_error_by_zone", "-p", f"zone; DROP TABLE {table}; --=1")
    assert r.returncode != 0 and "expected k=v" in r.stdout + r.stderr
    r = run_cli("query", "zone-stats", "--zone", f"161; DROP TABLE {table}")
    assert r.returncode == 2  # not an integer: refused before any SQL
    # Values carrying SQL are bound: a quote cannot end the literal, and "OR 1=1" cannot widen the filter.
    plain = run_cli("query", "sql", "recent_error_by_zone", "-p", "zone=161", "-p", "hours=100000")
    assert plain.returncode == 0, plain.stderr
    widened = run_cli("query", "sql", "recent_error_by_zone", "-p", "zone=161 OR 1=1", "-p", "hours=100000")
    assert widened.returncode == 0, widened.stderr
    after = run_cli("query", "sql", "recent_error_by_zone", "-p", "zone=161", "-p", "hours=100000")
    assert widened.stdout in (plain.stdout, after.stdout)  # (the sync may add rows between the calls)
    quoted = run_cli("query", "sql", "recent_error_by_zone", "-p",
                     f"zone=1' OR '1'='1'; DROP TABLE {table}; -- ", "-p", "hours=100000")
    assert quoted.returncode == 0, quoted.stderr  # interpolated, the quote would break the statement
    for value in (f"1; DROP TABLE {table}", f"1) UNION SELECT v, v, v, v, v, v FROM {table} -- "):
        r = run_cli("query", "sql", "drift_history", "-p", f"model_version={value}", "-p", "days=100000")
        assert r.returncode == 0 and "intact" not in r.stdout, (value, r.stdout, r.stderr)
    tables_after, rows_after = state()
    assert rows_after == rows_before
    assert tables_before <= tables_after  # nothing dropped (other work may add tables meanwhile)


def test_analyst_grants_are_read_only(stack, settings):
    """Writes refused to the analyst: tests/integration/test_mysql.py; here, its grants say nothing more."""
    from sqlalchemy import text

    from core.db import engine

    eng = engine(settings, analyst=True)
    try:
        with eng.connect() as conn:
            grants = [r[0] for r in conn.execute(text("SHOW GRANTS FOR CURRENT_USER()"))]
    finally:
        eng.dispose()
    privileges = set()
    for grant in grants:
        m = re.match(r"GRANT (.+?) ON (\S+) TO", grant)
        assert m, grant
        if m.group(1) != "USAGE":
            assert m.group(2).strip("`").startswith(settings.mysql.database), grant
            privileges |= {p.strip() for p in m.group(1).split(",")}
    assert privileges and privileges <= {"SELECT", "SHOW VIEW"}, grants


# --------------------------------------------------------------------------------------------- the Hive tier
# The Thrift Server is the analysts' way into Hive. It checks every login against its password file, refuses
# every write with an error that says so (the ReadOnlyGuard extension), and runs with credentials that cannot
# write even if a statement got past that: a metastore login with SELECT only and an S3 key that may only read.

@pytest.fixture(scope="module")
def canary_table(stack, spark, settings):
    """A lake table written by the platform (a Spark session with its own credentials): what analysts read."""
    from core.s3 import split_uri

    db = settings.spark.hive_database
    name = f"{db}.sec_canary_{secrets.token_hex(5)}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id INT, label STRING") \
        .write.mode("overwrite").format("parquet").saveAsTable(name)
    location = spark.sql(f"DESCRIBE FORMATTED {name}").where("col_name = 'Location'").first()["data_type"]
    bucket, prefix = split_uri(location)
    assert bucket == settings.s3.bucket and prefix
    yield name, prefix.rstrip("/") + "/"
    spark.sql(f"DROP TABLE IF EXISTS {name}")


def hive_rows(settings, *statements: str, **login) -> list[tuple]:
    """Run ``statements`` in one session as the analyst (or ``login``); the rows of the last one."""
    from core import hive

    conn = hive.connect(settings, **login)
    try:
        cur = conn.cursor()
        for sql in statements:
            cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def s3_keys(settings, *prefixes: str) -> dict[str, str]:
    """Key -> ETag of every object under ``prefixes`` in the lake bucket, read with the platform's key."""
    from core.s3 import s3_client

    client, out = s3_client(settings), {}
    for prefix in prefixes:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3.bucket, Prefix=prefix):
            out |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
    return out


def test_an_analyst_reads_the_lake_through_the_thrift_server(canary_table, settings):
    name, _ = canary_table
    db = settings.spark.hive_database
    assert db in {r[0] for r in hive_rows(settings, "SHOW DATABASES")}
    assert name.split(".")[1] in {r[1] for r in hive_rows(settings, f"SHOW TABLES IN {db}")}
    assert sorted(hive_rows(settings, f"SELECT id, label FROM {name}")) == [(1, "a"), (2, "b"), (3, "c")]
    assert hive_rows(settings, f"REFRESH TABLE {name}", f"SELECT COUNT(*) FROM {name} WHERE id >= 2") == [(2,)]
    assert [r[0] for r in hive_rows(settings, f"DESCRIBE {name}")][:2] == ["id", "label"]
    # PyHive escapes bound values: a quote stays inside the literal.
    from core import hive

    conn = hive.connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT %(v)s, %(n)s + 1", {"v": "it's; DROP DATABASE x --", "n": 41})
        assert cur.fetchall() == [("it's; DROP DATABASE x --", 42)]
    finally:
        conn.close()


@pytest.mark.parametrize("login", [
    lambda s: {"password": s.mysql.analyst_password.get_secret_value() + "x"},  # the analyst, a wrong password
    lambda s: {"password": ""},                                                   # the analyst, no password
    lambda s: {"user": "nobody", "password": "wrong-password"},                   # an unknown user
    lambda s: {"user": s.mysql.user, "password": s.mysql.password.get_secret_value()},  # no Hive login
], ids=["wrong-password", "empty-password", "unknown-user", "platform-mysql-user"])
def test_a_wrong_login_is_refused_at_connect(stack, settings, login):
    from thrift.transport.TTransport import TTransportException

    with pytest.raises(TTransportException, match="Error validating the login"):
        hive_rows(settings, "SHOW DATABASES", **login(settings))


def test_an_anonymous_login_is_refused(stack, settings):
    from pyhive import hive
    from thrift.transport.TTransport import TTransportException

    sp = settings.spark
    with pytest.raises(TTransportException, match="Error validating the login"):
        hive.connect(host=sp.thrift_host, port=sp.thrift_port, auth="NONE", username=settings.mysql.analyst_user)


def test_every_write_of_an_analyst_is_refused_and_changes_nothing(canary_table, settings, tmp_path):
    from pyhive.exc import OperationalError

    name, prefix = canary_table
    db, u = settings.spark.hive_database, secrets.token_hex(5)
    new_tables = [f"sec_new_{u}", f"sec_ctas_{u}", f"sec_renamed_{u}", f"sec_view_{u}"]
    new_prefixes = [f"{prefix.rsplit('/', 2)[0]}/{t}" for t in new_tables] + [f"tests/sec-{u}/"]
    local = tmp_path / "local-dir"
    script_mark = tmp_path / "script-ran"
    readable = tmp_path / "readable.txt"
    readable.write_text("a file of the server's machine\n")
    writes = {
        "CREATE TABLE": f"CREATE TABLE {db}.sec_new_{u} (a INT)",
        "CREATE TABLE USING": f"CREATE TABLE {db}.sec_new_{u} (a INT) USING parquet",
        "CREATE TABLE AS SELECT": f"CREATE TABLE {db}.sec_ctas_{u} AS SELECT * FROM {name}",
        "CREATE VIEW": f"CREATE VIEW {db}.sec_view_{u} AS SELECT * FROM {name}",
        "INSERT INTO": f"INSERT INTO {name} VALUES (99, 'x')",
        "INSERT OVERWRITE": f"INSERT OVERWRITE TABLE {name} SELECT 9, 'z'",
        "ALTER TABLE RENAME": f"ALTER TABLE {name} RENAME TO {db}.sec_renamed_{u}",
        "ALTER TABLE ADD COLUMNS": f"ALTER TABLE {name} ADD COLUMNS (extra INT)",
        "ALTER TABLE SET TBLPROPERTIES": f"ALTER TABLE {name} SET TBLPROPERTIES ('sec_mark' = 'analyst')",
        "TRUNCATE TABLE": f"TRUNCATE TABLE {name}",
        "DROP TABLE": f"DROP TABLE {name}",
        "CREATE DATABASE": f"CREATE DATABASE sec_db_{u}",
        "INSERT OVERWRITE DIRECTORY": f"INSERT OVERWRITE DIRECTORY 's3a://{settings.s3.bucket}/tests/sec-{u}/dir' "
                                      f"SELECT * FROM {name}",
        "INSERT OVERWRITE LOCAL DIRECTORY": f"INSERT OVERWRITE LOCAL DIRECTORY '{local}' SELECT * FROM {name}",
        "TRANSFORM (a script)": f"SELECT TRANSFORM(id) USING 'touch {script_mark}' AS (x) FROM {name}",
        "reflect": "SELECT reflect('java.lang.System', 'getProperty', 'user.name')",
        "ADD JAR": f"ADD JAR {readable}",
        "a file by path": f"SELECT * FROM text.`file://{readable}`",
    }
    tables_before = {r[1] for r in hive_rows(settings, f"SHOW TABLES IN {db}")}
    databases_before = {r[0] for r in hive_rows(settings, "SHOW DATABASES")}
    objects_before = s3_keys(settings, prefix, *new_prefixes)
    assert objects_before and all(k.startswith(prefix) for k in objects_before)
    for what, sql in writes.items():
        # Reading files by path is off on the server; a session that turns it back on is still refused.
        setup = ["SET spark.sql.runSQLOnFiles=true"] if what == "a file by path" else []
        with pytest.raises(OperationalError) as refused:
            hive_rows(settings, *setup, sql)
        message = str(refused.value)
        assert "Permission denied" in message and "refused" in message and "read-only" in message, (what, message)
    # Nothing changed: the tables and databases, the canary's rows and schema, the objects in S3, the local disk.
    tables_after = {r[1] for r in hive_rows(settings, f"SHOW TABLES IN {db}")}
    assert name.split(".")[1] in tables_after and not set(new_tables) & tables_after
    assert tables_before >= {t for t in tables_after if t.startswith("sec_")}
    databases_after = {r[0] for r in hive_rows(settings, "SHOW DATABASES")}
    assert f"sec_db_{u}" not in databases_after and databases_after >= {db, "default"} & databases_before
    assert sorted(hive_rows(settings, f"REFRESH TABLE {name}", f"SELECT * FROM {name}")) == [
        (1, "a"), (2, "b"), (3, "c")]
    assert [r[0] for r in hive_rows(settings, f"DESCRIBE {name}")] == ["id", "label"]
    assert ("sec_mark", "analyst") not in set(hive_rows(settings, f"SHOW TBLPROPERTIES {name}"))
    assert s3_keys(settings, prefix, *new_prefixes) == objects_before
    assert not local.exists() and not script_mark.exists()


def thrift_conf(settings) -> tuple[dict[str, str], dict[str, str]]:
    """The ``--conf`` and ``--hiveconf`` values of the running Thrift Server's command line."""
    pid = int((settings.pid_dir / "thrift.pid").read_text())
    argv = psutil.Process(pid).cmdline()
    pairs = {"--conf": {}, "--hiveconf": {}}
    for flag, value in zip(argv, argv[1:]):
        if flag in pairs:
            key, _, val = value.partition("=")
            pairs[flag][key] = val
    return pairs["--conf"], pairs["--hiveconf"]


def test_the_thrift_server_runs_with_credentials_that_cannot_write(canary_table, settings):
    """The lock beneath the guard: the running server's own credentials are refused every write."""
    import boto3
    import pymysql
    from botocore.exceptions import ClientError

    if settings.spark.thrift_external:
        pytest.skip("an external Thrift Server: its credentials are its owner's")
    name, prefix = canary_table
    conf, hiveconf = thrift_conf(settings)
    assert hiveconf["hive.server2.authentication"] == "CUSTOM"
    assert hiveconf["hive.server2.custom.authentication.class"] == "lambdaml.hive.PasswordFileAuthenticator"
    assert "lambdaml.hive.ReadOnlyGuard" in conf["spark.sql.extensions"].split(",")
    # The metastore login: it reads the catalog, and every change is refused by MariaDB itself.
    user, password = (conf["spark.hadoop.javax.jdo.option.ConnectionUserName"],
                      conf["spark.hadoop.javax.jdo.option.ConnectionPassword"])
    assert user == settings.mysql.metastore_reader_user != settings.mysql.user
    host, port = settings.mysql.server_host_port()
    conn = pymysql.connect(host=host, port=port, user=user, password=password,
                           database=settings.mysql.metastore_database, autocommit=False)
    u = secrets.token_hex(4)
    # Statements that would change nothing if they were allowed (no rows, tables that do not exist, a
    # transaction rolled back): MariaDB checks the privilege first and refuses each of them.
    attempts = ("INSERT INTO DBS (DB_ID, NAME, DB_LOCATION_URI) SELECT 999999, 'sec_x', 's3a://x' FROM DUAL "
                "WHERE 1 = 0",
                "UPDATE TBLS SET OWNER = OWNER WHERE 1 = 0", "DELETE FROM TBLS WHERE 1 = 0",
                f"CREATE TABLE sec_x_{u} (a INT)", f"ALTER TABLE sec_x_{u} ADD COLUMN b INT", f"DROP TABLE sec_x_{u}")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM TBLS WHERE TBL_NAME = %s", (name.split(".")[1],))
            assert cur.fetchone()[0] == 1
            for sql in attempts:
                with pytest.raises((pymysql.err.OperationalError, pymysql.err.ProgrammingError),
                                   match="command denied"):
                    cur.execute(sql)
            cur.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = [r[0] for r in cur.fetchall()]
        conn.rollback()
    finally:
        conn.close()
    assert all(re.match(r"GRANT (USAGE|SELECT) ON ", g) for g in grants), grants
    # The S3 key: it lists and reads the lake; a put, an overwrite or a delete is refused by the S3 server.
    access, secret = conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]
    assert access == settings.s3.reader_access_key != settings.s3.access_key
    reader = boto3.client("s3", endpoint_url=settings.s3.endpoint, region_name=settings.s3.region,
                          aws_access_key_id=access, aws_secret_access_key=secret)
    bucket = settings.s3.bucket
    objects = s3_keys(settings, prefix)
    key = next(k for k in objects if k.endswith(".parquet"))
    assert reader.list_objects_v2(Bucket=bucket, Prefix=prefix)["KeyCount"] == len(objects)
    assert reader.get_object(Bucket=bucket, Key=key)["Body"].read(4) == b"PAR1"
    for attempt in (lambda: reader.put_object(Bucket=bucket, Key=f"{prefix}sec-new", Body=b"x"),
                    lambda: reader.put_object(Bucket=bucket, Key=key, Body=b"overwritten"),
                    lambda: reader.delete_object(Bucket=bucket, Key=key),
                    lambda: reader.copy_object(Bucket=bucket, Key=f"{prefix}sec-copy",
                                               CopySource={"Bucket": bucket, "Key": key}),
                    lambda: reader.put_bucket_policy(Bucket=bucket, Policy="{}"),
                    lambda: reader.create_bucket(Bucket=f"sec-{secrets.token_hex(4)}")):
        with pytest.raises(ClientError) as denied:
            attempt()
        assert denied.value.response["Error"]["Code"] == "AccessDenied", denied.value.response
    assert s3_keys(settings, prefix) == objects


def test_beeline_reads_as_the_analyst_and_is_refused_writes(canary_table, settings, tmp_path):
    from core import hive
    from core.spark import spark_home

    name, _ = canary_table
    m = settings.mysql
    password_file = tmp_path / "password"
    password_file.write_text(m.analyst_password.get_secret_value())
    password_file.chmod(0o600)

    def beeline(*login: str, sql: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(spark_home() / "bin" / "beeline"), "-u", hive.jdbc_url(settings), *login,
                               "--silent=true", "--outputformat=csv2", "-e", sql],
                              capture_output=True, text=True, timeout=180,
                              env=dict(os.environ, SPARK_HOME=str(spark_home())))

    analyst = ("-n", m.analyst_user, "-w", str(password_file))
    read = beeline(*analyst, sql=f"SELECT COUNT(*) FROM {name}")
    assert read.returncode == 0 and read.stdout.split()[-1] == "3", read.stdout + read.stderr
    for sql in (f"CREATE TABLE {name}_bl (a INT)", f"INSERT INTO {name} VALUES (7, 'g')", f"DROP TABLE {name}"):
        write = beeline(*analyst, sql=sql)
        assert write.returncode != 0 and "Permission denied" in write.stderr and "refused" in write.stderr, sql
    for login in (("-n", m.analyst_user, "-p", "wrong-password"), ("-n", "nobody", "-p", "wrong-password")):
        refused = beeline(*login, sql="SELECT 1")
        assert refused.returncode != 0 and "Error validating the login" in refused.stderr, refused.stderr
    assert beeline(*analyst, sql=f"SELECT COUNT(*) FROM {name}").stdout.split()[-1] == "3"


# --------------------------------------------------------------------------------------------- logs and repository
def configured_secrets(settings: Settings) -> dict[str, str]:
    """Secret values of the settings long enough not to match ordinary words (``admin`` is also a user name)."""
    values = {"mysql.password": settings.mysql.password, "mysql.analyst_password": settings.mysql.analyst_password,
              "mysql.metastore_reader_password": settings.mysql.metastore_reader_password,
              "s3.secret_key": settings.s3.secret_key, "s3.reader_secret_key": settings.s3.reader_secret_key,
              "airflow.admin_password": settings.airflow.admin_password, "speed.api_key": settings.speed.api_key}
    return {k: v.get_secret_value() for k, v in values.items() if v is not None and len(v.get_secret_value()) >= 8}


def test_stack_logs_carry_no_secrets(stack, settings):
    logs = sorted(p for p in settings.log_dir.rglob("*") if p.is_file())
    assert logs, f"no logs under {settings.log_dir}"
    found = configured_secrets(settings)
    assert "mysql.password" in found and "s3.secret_key" in found  # the check has something to look for
    leaks = []
    for path in logs:
        data = path.read_bytes()
        leaks += [f"{path.name}: {name}" for name, value in found.items() if value.encode() in data]
    assert leaks == []


# Documented local-development defaults (README, "Ports, logs and state"; core/settings.py) and placeholders.
ALLOWED_VALUES = {"lambdaml-dev", "analyst-dev", "lambdaml-secret", "hive-reader-dev", "lambdaml-reader-secret",
                  "admin", "lambdaml", "analyst", "pw", "password", "user", "secret", "changeme"}
PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
}
ASSIGNED = re.compile(r"""(?ix)\b[\w.-]*(password|passwd|secret|api_key|apikey|access_token|auth_token)[\w.-]*
                          ["']?\s*[:=]\s*["']([^"'\s$<>{}()]{3,})["']""")
# Unquoted values of env files and YAML: ``MYSQL_PASSWORD=...``, ``password: ...``.
# (References stay out: ``&anchor``, ``*alias``, ``[list]``, ``/path/to/secret-file``, ``${VAR}``.)
LINE_ASSIGNED = re.compile(r"""(?imx)^[ \t]*(?:export[ \t]+|-[ \t]+)?
                               [\w.-]*(password|passwd|secret|api_key|apikey|token)[\w.-]*[ \t]*[:=][ \t]*([^\s"'#{}$<>()\[\],&*/][^\s"'#{}$<>(),]*)[ \t]*$""")
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://([^:/\s@\"']+):([^@/\s\"']+)@")
PLACEHOLDER_MARKS = ("change-me", "changeme", "example", "placeholder", "xxx", "…", "...", "redacted", "your-")


def allowed(value: str) -> bool:
    """A documented default or a placeholder that stands for a value to set."""
    return value in ALLOWED_VALUES or any(mark in value.lower() for mark in PLACEHOLDER_MARKS)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    files = []
    for name in out.decode().split("\0"):
        path = PROJECT_ROOT / name
        if name and path.is_file() and path.stat().st_size < 2_000_000:
            files.append(path)
    return files


def credential_findings(path: Path, text: str) -> list[str]:
    """Credentials in ``text``: known token formats anywhere; assigned or URL passwords that are not the
    documented defaults, outside tests/ (whose throwaway keys configure no real service)."""
    found = [f"{path}: {kind}" for kind, pattern in PATTERNS.items() if pattern.search(text)]
    if "tests" not in path.relative_to(PROJECT_ROOT).parts:
        for pattern in (ASSIGNED, LINE_ASSIGNED, URL_CREDENTIALS):
            found += [f"{path}: {m.group(0).strip()[:60]!r}" for m in pattern.finditer(text) if not allowed(m.group(2))]
    return found


def test_credential_scan_catches_what_it_should():
    fake = PROJECT_ROOT / "core" / "example.py"
    assert credential_findings(fake, 'password = "hunter2-prod"')
    assert credential_findings(fake, "url: mysql://app:Sup3rS3cret@db:3306/x")
    assert credential_findings(fake, "AKIA" + "ABCDEFGHIJKLMNOP")
    assert credential_findings(fake, "-----BEGIN RSA " + "PRIVATE KEY-----")
    assert not credential_findings(fake, 'password: SecretStr = SecretStr("lambdaml-dev")')
    assert not credential_findings(fake, "mysql+pymysql://user:pw@host:3306/lambda")
    assert credential_findings(fake, "LAMBDAML_MYSQL__PASSWORD=Pr0d-pass\n")
    assert credential_findings(fake, "  MYSQL_ROOT_PASSWORD: Pr0d-pass\n")
    assert not credential_findings(fake, "LAMBDAML_MYSQL__PASSWORD=change-me-mysql\n")
    assert not credential_findings(fake, "url: mysql+pymysql://lambdaml:…@db:3306/lambda")
    assert not credential_findings(fake, "  password: ${MYSQL_PASSWORD}\n")


def test_tracked_files_carry_no_credentials_but_the_documented_defaults():
    from core.settings import Settings as S

    defaults = S.model_construct()
    for value in (defaults.mysql.password, defaults.mysql.analyst_password, defaults.mysql.metastore_reader_password,
                  defaults.s3.secret_key, defaults.s3.reader_secret_key):
        assert value.get_secret_value() in ALLOWED_VALUES  # the allowed list is the settings' defaults
    findings = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        findings += credential_findings(path, text)
    assert findings == []


# --------------------------------------------------------------------------------------------- listening sockets
def listening(settings: Settings) -> list[tuple[str, str, int, str]]:
    """(service, process name, port, address) of every listening socket of the stack's processes."""
    out = []
    for pid_file in sorted(settings.pid_dir.glob("*.pid")):
        try:
            root = psutil.Process(int(pid_file.read_text()))
            procs = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, ValueError):
            continue
        for proc in procs:
            try:
                conns, name = proc.net_connections(kind="inet"), proc.name()
            except psutil.NoSuchProcess:
                continue
            out += [(pid_file.stem, name, c.laddr.port, c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def airflow_log_server(entry: tuple[str, str, int, str], settings: Settings) -> bool:
    service, _, port, _ = entry
    return service == "airflow" and port in (settings.airflow.worker_log_port, settings.airflow.trigger_log_port)


def ray_node(entry: tuple[str, str, int, str]) -> bool:
    return entry[0].startswith("ray-")


def test_the_stack_listens_on_loopback_only(stack, settings):
    sockets = listening(settings)
    assert {s[0] for s in sockets} >= {"mariadb", "s3", "kafka", "ray-head", "thrift", "airflow"}, sockets
    exposed = [s for s in sockets if not is_loopback(s[3]) and not airflow_log_server(s, settings)
               and not ray_node(s)]
    assert exposed == [], ("listening beyond loopback (a service started before its bind settings changed keeps "
                           "them until `lambdaml stack down --only NAME` and `stack up`)")


@pytest.mark.xfail(strict=True, reason="Airflow 3's log servers (serve-logs) bind every interface: the host is "
                                       "hard-coded and `airflow standalone` has no --skip-serve-logs")
def test_airflow_log_servers_listen_on_loopback_only(stack, settings):
    log_servers = [s for s in listening(settings) if airflow_log_server(s, settings)]
    assert log_servers and all(is_loopback(s[3]) for s in log_servers), log_servers


@pytest.mark.xfail(strict=True, reason="Ray 2.60's GCS and raylet bind every interface, and Ray resolves a "
                                       "loopback --node-ip-address to the machine's address: it has no setting to "
                                       "bind loopback (the token below guards them)")
def test_ray_listens_on_loopback_only(stack, settings):
    ray_sockets = [s for s in listening(settings) if ray_node(s)]
    assert ray_sockets and all(is_loopback(s[3]) for s in ray_sockets), ray_sockets


RAY_CONNECT = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
except Exception as exc:
    print("REFUSED", type(exc).__name__, str(exc).splitlines()[0][:200])
else:
    ray.shutdown()
    print("CONNECTED")
"""


@pytest.mark.parametrize("token", [None, "a-wrong-token"], ids=["no-token", "wrong-token"])
def test_the_stack_ray_refuses_a_driver_without_its_token(stack, settings, tmp_path, token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    if token:
        (tmp_path / "token").write_text(token)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp_path / "token"))
    out = subprocess.run([sys.executable, "-c", RAY_CONNECT, settings.ray_head_address], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "REFUSED" in out.stdout and "CONNECTED" not in out.stdout, out.stdout + out.stderr[-2000:]
    assert "InvalidAuthToken" in out.stdout + out.stderr, out.stdout + out.stderr[-2000:]  # refused for the token


def test_the_stack_ray_accepts_the_platform_token(stack, settings, tmp_path):
    from core.ray_auth import token_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), **token_env(settings))
    out = subprocess.run([sys.executable, "-c", RAY_CONNECT, settings.ray_head_address], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "CONNECTED" in out.stdout, out.stdout + out.stderr[-2000:]
