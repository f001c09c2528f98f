"""Which Ray a search runs on: the configured one, the local stack's standing head, or one of its own."""

from __future__ import annotations

import socket

from batch.tune import head_answers, ray_address
from core.settings import Settings

HEAD = "127.0.0.1:16379"


def test_a_configured_address_is_joined_whether_or_not_the_head_answers():
    assert ray_address("ray://head:10001", HEAD, head_answers=True) == "ray://head:10001"
    assert ray_address("ray://head:10001", HEAD, head_answers=False) == "ray://head:10001"


def test_unset_joins_the_stack_head_when_it_answers_else_starts_its_own():
    assert ray_address(None, HEAD, head_answers=True) == HEAD
    assert ray_address(None, HEAD, head_answers=False) is None


def test_local_always_starts_a_ray_of_its_own():
    assert ray_address("local", HEAD, head_answers=True) is None


def test_head_answers_probes_the_head_port_only_when_the_stack_runs_a_head():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert head_answers(Settings(cluster={"ray_port": port}))
        assert not head_answers(Settings(cluster={"ray_port": port}, ray={"local_head": False}))
    assert not head_answers(Settings(cluster={"ray_port": port}))  # closed now


def test_the_platform_ray_token_is_made_once_and_private(tmp_path):
    from core.ray_auth import token_env

    s = Settings(runtime_dir=tmp_path)
    env = token_env(s)
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(s.ray_token_file)}
    token = s.ray_token_file.read_text()
    assert len(token) == 64 and s.ray_token_file.stat().st_mode & 0o077 == 0
    assert token_env(s) == env and s.ray_token_file.read_text() == token  # kept, not replaced
