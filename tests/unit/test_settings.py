from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_defaults_avoid_standard_ports():
    s = Settings()
    standard = {9092, 9093, 3306, 9000, 10000, 8080, 8793, 8794}
    used = {s.kafka.port, s.kafka.controller_port, s.mysql.port, s.s3.port, s.spark.thrift_port,
            s.airflow.port, s.airflow.worker_log_port, s.airflow.trigger_log_port}
    assert not used & standard
    assert len(used) == 8


def test_environment_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("LAMBDAML_KAFKA__PORT", "29092")
    monkeypatch.setenv("LAMBDAML_KAFKA__TRIP_REQUESTS_TOPIC", "custom.requests")
    monkeypatch.setenv("LAMBDAML_SPARK__MASTER", "spark://master:7077")
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:29092"
    assert s.kafka.trip_requests_topic in s.kafka.topics
    assert s.spark.master == "spark://master:7077"


def test_config_file_is_read_and_env_wins(monkeypatch, tmp_path):
    cfg = tmp_path / "lambdaml.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = "broker-a:9092,broker-b:9092"\n[s3]\nbucket = "lake-prod"\n')
    monkeypatch.setenv("LAMBDAML_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("LAMBDAML_S3__BUCKET", "from-env")
    s = Settings()
    assert s.kafka.bootstrap == "broker-a:9092,broker-b:9092"
    assert s.kafka.external
    assert s.s3.bucket == "from-env"


def test_missing_config_file_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMBDAML_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ValueError, match="LAMBDAML_CONFIG_FILE"):
        Settings()


def test_bad_value_names_the_field(monkeypatch):
    monkeypatch.setenv("LAMBDAML_MYSQL__PORT", "not-a-port")
    with pytest.raises(ValidationError, match="mysql.port"):
        Settings()


def test_unknown_setting_is_rejected():
    with pytest.raises(ValidationError):
        Settings(kafak={"port": 1})


def test_secrets_are_masked_in_dumps():
    s = Settings()
    dumped = s.model_dump_json()
    assert s.mysql.password.get_secret_value() not in dumped
    assert s.s3.secret_key.get_secret_value() not in dumped


def test_mysql_urls_for_app_and_analyst():
    s = Settings()
    assert s.mysql.sqlalchemy_url().startswith("mysql+pymysql://lambdaml:")
    assert s.mysql.sqlalchemy_url().endswith("@127.0.0.1:13306/lambda")
    assert s.mysql.sqlalchemy_url(analyst=True).startswith("mysql+pymysql://analyst:")
    ext = Settings(mysql={"url": "mysql+pymysql://u:p@db.example:3307/lambda"})
    assert ext.mysql.external
    assert ext.mysql.server_host_port() == ("db.example", 3307)
    assert "analyst:" in ext.mysql.sqlalchemy_url(analyst=True)
    assert "@db.example:3307/lambda" in ext.mysql.sqlalchemy_url(analyst=True)


def test_as_env_round_trips(tmp_path):
    s = Settings(runtime_dir=tmp_path, kafka={"port": 1234}, mysql={"password": "pw"})
    env = s.as_env()
    assert env["LAMBDAML_KAFKA__PORT"] == "1234"
    assert env["LAMBDAML_MYSQL__PASSWORD"] == "pw"
    assert env["LAMBDAML_RUNTIME_DIR"] == str(tmp_path)


def test_s3_uri():
    s = Settings()
    assert s.s3.uri("raw", "trips/") == "s3a://lake/raw/trips"
    assert s.warehouse_dir == "s3a://lake/warehouse"
