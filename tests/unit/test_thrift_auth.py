"""The analysts' Thrift Server, as configuration: its password file lines, the S3 policy of its key, and the
command line it runs with (the read-only credentials, the login check, the guard). No server is started."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from pydantic import SecretStr

from core import s3server
from core.settings import Settings
from deploy.local import thrift_auth
from deploy.local.services import ThriftServer


def test_a_password_line_holds_a_salted_pbkdf2_hash_that_verifies():
    line = thrift_auth.password_line("analyst", "s3cret-pw", iterations=1000)
    user, scheme, iterations, salt, digest = line.split(":")
    assert (user, scheme, iterations) == ("analyst", "pbkdf2_sha256", "1000")
    assert "s3cret-pw" not in line
    expected = hashlib.pbkdf2_hmac("sha256", b"s3cret-pw", base64.b64decode(salt), 1000, dklen=32)
    assert base64.b64decode(digest) == expected
    assert base64.b64decode(digest) != hashlib.pbkdf2_hmac("sha256", b"s3cret-px", base64.b64decode(salt), 1000, 32)
    # A fresh salt each time: equal passwords do not give equal lines.
    assert thrift_auth.password_line("analyst", "s3cret-pw", iterations=1000) != line
    assert thrift_auth.password_line("a", "pw", salt=b"0" * 16, iterations=1000) == \
        thrift_auth.password_line("a", "pw", salt=b"0" * 16, iterations=1000)


@pytest.mark.parametrize("user", ["", "a:b", "a\nb", "#a", " a"])
def test_a_user_name_that_would_break_the_file_is_refused(user):
    with pytest.raises(ValueError, match="cannot be a Thrift Server user name"):
        thrift_auth.password_line(user, "pw")


def test_the_password_file_is_private_and_holds_only_hashes(tmp_path):
    path = thrift_auth.write_password_file(tmp_path / "auth" / "passwords", {"analyst": "pw-1", "bob": "pw-2"})
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "pw-1" not in text and "pw-2" not in text
    users = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert users == ["analyst", "bob"]


def test_the_thrift_server_logs_in_the_analyst_only():
    s = Settings(mysql={"analyst_user": "ana", "analyst_password": SecretStr("ana-pw")})
    assert thrift_auth.thrift_users(s) == {"ana": "ana-pw"}


def test_the_reader_key_may_only_list_and_read_the_lake():
    s = Settings(s3={"bucket": "lake-x", "reader_access_key": "ro-key"})
    policy = s3server.read_only_policy(s)
    statements = policy["Statement"]
    assert {a for st in statements for a in st["Action"]} == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject"}
    assert all(st["Effect"] == "Allow" and st["Principal"] == {"AWS": ["ro-key"]} for st in statements)
    assert {r for st in statements for r in st["Resource"]} == {"arn:aws:s3:::lake-x", "arn:aws:s3:::lake-x/*"}
    json.dumps(policy)  # what put_bucket_policy sends


def _conf(argv: list[str], flag: str) -> dict[str, str]:
    return dict(v.split("=", 1) for f, v in zip(argv, argv[1:]) if f == flag)


def test_the_thrift_server_runs_with_read_only_credentials_a_login_check_and_the_guard():
    s = Settings(
        mysql={"password": SecretStr("writer-pw"), "metastore_reader_user": "hr",
               "metastore_reader_password": SecretStr("reader-pw")},
        s3={"access_key": "writer-key", "secret_key": SecretStr("writer-secret"),
            "reader_access_key": "reader-key", "reader_secret_key": SecretStr("reader-secret")},
        # A setting must not hand the server other credentials for the lake bucket.
        spark={"extra_conf": {"spark.hadoop.fs.s3a.bucket.lake.access.key": "writer-key",
                              "spark.hadoop.fs.s3a.bucket.lake.secret.key": "writer-secret",
                              "spark.sql.extensions": "com.example.Other"}},
    )
    argv, _ = ThriftServer(s).command()
    conf, hiveconf = _conf(argv, "--conf"), _conf(argv, "--hiveconf")
    assert conf["spark.hadoop.javax.jdo.option.ConnectionUserName"] == "hr"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] == "reader-pw"
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == (
        "reader-key", "reader-secret")
    assert not any(k.startswith("spark.hadoop.fs.s3a.bucket.") for k in conf)
    assert not {"writer-pw", "writer-key", "writer-secret"} & set(conf.values())
    assert conf["spark.sql.extensions"].split(",") == ["com.example.Other", thrift_auth.GUARD]
    assert str(thrift_auth.jar_path(s)) in conf["spark.driver.extraClassPath"].split(":")
    assert conf["spark.sql.hive.caseSensitiveInferenceMode"] == "INFER_ONLY"
    assert hiveconf["hive.server2.authentication"] == "CUSTOM"
    assert hiveconf["hive.server2.custom.authentication.class"] == thrift_auth.AUTHENTICATOR
    assert hiveconf[thrift_auth.FILE_PROPERTY] == str(ThriftServer(s).passwords_file)


def test_the_classes_are_rebuilt_when_their_sources_change(tmp_path):
    s = Settings(cache_dir=tmp_path)
    before = thrift_auth.jar_path(s)
    assert before.parent == tmp_path / "hive-guard" and before.suffix == ".jar"
    copy = tmp_path / "java"
    for src in thrift_auth.source_files():
        target = copy / src.relative_to(thrift_auth.SOURCES)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
    assert thrift_auth.jar_path(s, copy) == before  # same sources, same jar
    guard = copy / "lambdaml" / "hive" / "ReadOnlyGuard.java"
    guard.write_text(guard.read_text() + "\n// changed\n")
    assert thrift_auth.jar_path(s, copy) != before
