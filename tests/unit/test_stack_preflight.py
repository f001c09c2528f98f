"""Bad configuration fails fast, with a message that names the setting."""

from __future__ import annotations

import socket
import time

import pytest

from core.settings import Settings
from deploy.local.process import StackError
from deploy.local.stack import Stack


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_occupied_port_names_the_setting(tmp_path, listener):
    s = Settings(runtime_dir=tmp_path, s3={"port": listener})
    with pytest.raises(StackError, match=rf"port {listener}.*LAMBDAML_S3__PORT"):
        Stack(s, only=["s3"], echo=lambda _: None).up()


def test_missing_java_names_the_setting(tmp_path):
    s = Settings(runtime_dir=tmp_path, java_home=tmp_path / "no-jdk")
    stack = Stack(s, only=["kafka"], echo=lambda _: None)
    with pytest.raises(StackError, match="LAMBDAML_JAVA_HOME"):
        stack.services[0].command()


def test_unreachable_external_mysql_fails_fast_naming_the_url(tmp_path):
    # Nothing answers MySQL on a port we hold but never serve.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    s = Settings(runtime_dir=tmp_path, mysql={"url": f"mysql+pymysql://u:p@127.0.0.1:{port}/lambda"})
    t0 = time.monotonic()
    with pytest.raises(StackError, match="unreachable.*LAMBDAML_MYSQL__URL"):
        Stack(s, only=["mariadb"], echo=lambda _: None).up()
    assert time.monotonic() - t0 < 30


def test_unknown_service_is_rejected(tmp_path):
    with pytest.raises(StackError, match="unknown service"):
        Stack(Settings(runtime_dir=tmp_path), only=["postgres"])


def test_only_pulls_in_dependencies(tmp_path):
    names = [s.name for s in Stack(Settings(runtime_dir=tmp_path), only=["thrift"]).services]
    assert names == ["mariadb", "s3", "thrift"]


def test_kraft_cluster_ids_never_read_as_an_option():
    from deploy.local.services import kraft_cluster_id

    ids = [kraft_cluster_id() for _ in range(5000)]  # about 78 of them would start with '-' unguarded
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
