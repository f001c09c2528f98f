"""The Airflow REST client rides out a busy API server on calls it may repeat, and only on those."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.settings import Settings
from deploy.local import airflow_db
from deploy.local.airflow_api import AirflowAPI
from deploy.local.services import airflow_env


class _Flaky(BaseHTTPRequestHandler):
    """An HTTP server that answers ``failures`` 500s (then 200s) to every path but the token one."""

    failures = 0
    seen: list[str] = []
    runs: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/auth/token":
            code, body = 200, {"access_token": "t"}
        elif self.path.startswith("/missing"):
            code, body = 404, {"detail": "not found"}
        elif self.path.endswith("/dagRuns") and "dag_run_id" in sent:
            # Like Airflow: the run is created even when the answer fails to reach the client.
            type(self).seen.append(self.command)
            duplicate = sent["dag_run_id"] in type(self).runs
            type(self).runs.append(sent["dag_run_id"])
            if duplicate:
                code, body = 409, {"detail": "run exists"}
            elif type(self).failures > 0:
                type(self).failures -= 1
                code, body = 500, {"detail": "database is locked"}
            else:
                code, body = 200, {"dag_run_id": sent["dag_run_id"]}
        else:
            type(self).seen.append(self.command)
            if type(self).failures > 0:
                type(self).failures -= 1
                code, body = 500, {"detail": "database is locked"}
            else:
                code, body = 200, {"ok": True}
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Flaky.failures, _Flaky.seen, _Flaky.runs = 0, [], []
    settings = Settings(runtime_dir=tmp_path, airflow={"port": server.server_address[1]})
    yield AirflowAPI(settings)
    server.shutdown()
    server.server_close()


def test_an_idempotent_call_is_retried_through_transient_500s(api):
    _Flaky.failures = 2
    assert api.call("PATCH", "/api/v2/dags/d", {"is_paused": True}) == {"ok": True}
    assert _Flaky.seen == ["PATCH"] * 3


def test_a_post_is_not_repeated(api):
    _Flaky.failures = 1
    with pytest.raises(urllib.error.HTTPError) as err:
        api.call("POST", "/api/v2/dags/d/dagRuns", {"conf": {}})
    assert err.value.code == 500 and _Flaky.seen == ["POST"]


def test_a_trigger_whose_answer_was_lost_is_retried_and_runs_once(api):
    _Flaky.failures = 1
    run_id = api.trigger("d", {"k": 1})
    assert _Flaky.seen == ["POST", "POST"] and _Flaky.runs == [run_id, run_id]


def test_each_trigger_names_a_new_run(api):
    assert api.trigger("d") != api.trigger("d")
    assert _Flaky.seen == ["POST", "POST"] and len(set(_Flaky.runs)) == 2


def test_a_client_error_is_raised_at_once(api):
    with pytest.raises(urllib.error.HTTPError) as err:
        api.call("GET", "/missing")
    assert err.value.code == 404


def test_retries_stop_after_their_budget(api):
    _Flaky.failures = 100
    with pytest.raises(urllib.error.HTTPError):
        api.call("GET", "/api/v2/dags", retry_for=2.5)
    assert 2 <= len(_Flaky.seen) < 10


def test_local_airflow_waits_for_the_sqlite_writer(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    env = airflow_env(Settings(runtime_dir=tmp_path))
    for key, value in (("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", airflow_db.SYNC),
                       ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC", airflow_db.ASYNC)):
        module, _, name = env[key].rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name) is value
        assert value["timeout"] >= 30


def test_another_metadata_database_gets_no_sqlite_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://a:b@db/airflow")
    env = airflow_env(Settings(runtime_dir=tmp_path))
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in env
