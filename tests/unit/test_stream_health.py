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
