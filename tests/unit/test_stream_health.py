"""The platform-health check of the streaming job, read from the status file the job writes."""

from __future__ import annotations

import json

import pytest

from core.settings import Settings
from serving.health import check_service


def _settings(tmp_path, status: dict | None) -> Settings:
    s = Settings(runtime_dir=tmp_path)
    if status is not None:
        (tmp_path / "speed").mkdir(parents=True, exist_ok=True)
        (tmp_path / "speed" / "stream-status.json").write_text(json.dumps(status))
    return s


def test_a_stream_never_started_here_is_not_an_error(tmp_path):
    assert "not started" in check_service("speed-stream", _settings(tmp_path, None))


def test_a_running_stream_says_its_batches_and_restarts(tmp_path):
    out = check_service("speed-stream", _settings(tmp_path, {"state": "running", "batches": 12, "restarts": 1}))
    assert out == "running, 12 batches, 1 restart(s)"


def test_a_failing_stream_names_its_last_failure_and_offsets(tmp_path):
    status = {"state": "restarting", "restarts": 3, "last_failure": {
        "at": "2026-12-03T10:00:00+00:00", "error": "RecordTooLargeException", "after_offsets": {"t": {"0": 41}},
        "repeats": 3}}
    with pytest.raises(RuntimeError, match=r"restarting after 3 restart.*RecordTooLargeException.*41.*3 time"):
        check_service("speed-stream", _settings(tmp_path, status))


def test_metrics_show_each_streaming_job_state_restarts_and_status_age(tmp_path):
    import datetime as dt

    from prometheus_client import CollectorRegistry, generate_latest

    from speed import metrics

    now = dt.datetime(2026, 12, 4, 12, 0, 30, tzinfo=dt.UTC)
    s = _settings(tmp_path, {"state": "restarting", "batches": 0, "restarts": 3, "ts": "2026-12-04T12:00:00+00:00"})
    (tmp_path / "speed" / "lake-sink-status.json").write_text("{not json")  # half-written: left out, no error
    statuses = metrics.job_statuses(s)
    assert list(statuses) == ["speed-stream"]

    registry = CollectorRegistry()
    registry.register(type("C", (), {"collect": lambda self: metrics.job_families(statuses, now)})())
    lines = generate_latest(registry).decode().splitlines()
    assert 'lambdaml_stream_state{job="speed-stream",state="restarting"} 1.0' in lines
    assert 'lambdaml_stream_state{job="speed-stream",state="running"} 0.0' in lines
    assert 'lambdaml_stream_restarts{job="speed-stream"} 3.0' in lines
    assert 'lambdaml_stream_status_age_seconds{job="speed-stream"} 30.0' in lines
    assert metrics.job_statuses(Settings(runtime_dir=tmp_path / "elsewhere")) == {}  # no job ran here: no series


def test_the_service_metrics_carry_the_jobs_found_in_its_runtime_dir(tmp_path):
    from speed import metrics

    body, _ = metrics.exposition(_settings(tmp_path, {"state": "running", "batches": 7,
                                                       "ts": "2026-12-04T12:00:00+00:00"}))
    assert 'lambdaml_stream_batches{job="speed-stream"} 7.0' in body.decode()
    assert "lambdaml_stream_state" not in metrics.exposition()[0].decode()


@pytest.mark.parametrize(("ray", "says"), [
    ({"local_head": False}, "ray.local_head is off"),
    ({"address": "local"}, "ray.address=local"),
])
def test_a_stack_without_a_ray_head_says_where_searches_run(tmp_path, ray, says):
    from core.settings import RaySettings

    settings = Settings(runtime_dir=tmp_path, ray=RaySettings(**ray))
    out = check_service("ray-head", settings)
    assert out.startswith("not run by this stack") and says in out


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_ray_named_by_its_address_must_accept_connections(tmp_path, scheme):
    import socket

    from core.settings import RaySettings

    with socket.socket() as server:  # something listening, as a Ray's GCS or client server would
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"{scheme}127.0.0.1:{server.getsockname()[1]}"
        out = check_service("ray-head", Settings(runtime_dir=tmp_path, ray=RaySettings(address=address)))
        assert out == f"not run by this stack: searches join the Ray at {address} (ray.address)"
    # the same port, nothing listening any more
    with pytest.raises(RuntimeError, match="does not accept connections"):
        check_service("ray-head", Settings(runtime_dir=tmp_path, ray=RaySettings(address=address)))
