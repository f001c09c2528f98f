"""The demo's "where to look" block: every address from the settings, and no configured secret."""

from __future__ import annotations

from pydantic import SecretStr

from core.settings import Settings
from deploy.local.demo import where_to_look


def test_where_to_look_shows_local_defaults_and_addresses():
    s = Settings()
    text = where_to_look(s)
    assert f"login {s.airflow.admin_user} / admin" in text and s.speed.url in text and s.kafka.bootstrap in text
    assert f"-p{s.mysql.analyst_password.get_secret_value()}" in text
    # Hive logs in as the analyst too: the Thrift Server refuses anonymous logins.
    assert f"auth='CUSTOM', username='{s.mysql.analyst_user}', password='analyst-dev'" in text
    assert f"-n {s.mysql.analyst_user} -p analyst-dev" in text


def test_where_to_look_never_prints_a_configured_password():
    s = Settings(airflow={"admin_password": SecretStr("airflow-s3cret")},
                 mysql={"analyst_password": SecretStr("analyst-s3cret")})
    text = where_to_look(s)
    assert "s3cret" not in text
    assert "$LAMBDAML_AIRFLOW__ADMIN_PASSWORD" in text and "$LAMBDAML_MYSQL__ANALYST_PASSWORD" in text
