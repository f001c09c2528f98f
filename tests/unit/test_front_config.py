"""The front of the prediction service (haproxy) is configured from the typed settings alone."""

from __future__ import annotations

import json
import subprocess

import pytest

from core.settings import Settings
from deploy.local.install import which
from deploy.local.speed import front_config, front_refusal


def _settings(tmp_path, **speed) -> Settings:
    return Settings(runtime_dir=tmp_path, speed=speed)


def test_the_front_takes_the_public_port_and_gunicorn_the_next(tmp_path):
    s = _settings(tmp_path, port=18400, workers=3, threads=5, front_max_queue=40, front_queue_timeout_ms=250,
                  retry_after_s=4)
    assert (s.speed.gunicorn_port, s.speed.app_url) == (18401, "http://127.0.0.1:18401")
    text = front_config(s)
    assert "bind 127.0.0.1:18400" in text
    assert "server gunicorn 127.0.0.1:18401 maxconn 15" in text  # workers x threads inside gunicorn
    assert "if { queue(gunicorn) ge 40 }" in text and "timeout queue 250ms" in text
    assert text.count("hdr Retry-After 4 ") == 2  # the queue-full answer and every other 503 of the front


def test_without_the_front_gunicorn_serves_the_public_port(tmp_path):
    s = _settings(tmp_path, port=18400, front_proxy=False)
    assert s.speed.gunicorn_port == 18400 and s.speed.app_url == s.speed.url


def test_an_explicit_app_port_is_kept(tmp_path):
    assert _settings(tmp_path, port=18400, app_port=19555).speed.gunicorn_port == 19555


def test_the_fronts_refusal_reads_like_the_apps(tmp_path):
    s = _settings(tmp_path, retry_after_s=3)
    body = front_refusal(s)
    assert body["retry_after_s"] == 3 and body["error"].startswith("overloaded: ")
    assert f"string '{json.dumps(body, separators=(',', ':'))}'" in front_config(s)


def test_haproxy_accepts_the_configuration(tmp_path):
    haproxy = which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (make install installs it)")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(front_config(_settings(tmp_path, retry_after_s=2)))
    checked = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
