"""A small client of the running Airflow's REST API: trigger DAG runs and follow them, the way a user does in the UI."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

# Calls that can be repeated without changing the outcome; triggering a run (POST) is not one of them.
IDEMPOTENT = frozenset({"GET", "PATCH", "PUT", "DELETE"})


def _transient(exc: BaseException) -> bool:
    """A 5xx, or a connection refused or reset: the API server is busy or restarting, not refusing."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError))


class AirflowAPI:
    def __init__(self, settings):
        self.base = settings.airflow.url
        a = settings.airflow
        body = json.dumps({"username": a.admin_user, "password": a.admin_password.get_secret_value()}).encode()
        req = urllib.request.Request(f"{self.base}/auth/token", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.token = json.load(resp)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, retry_for: float = 90.0) -> dict:
        """One REST call. Idempotent ones are retried for up to ``retry_for`` seconds on a 5xx or a dropped
        connection (e.g. the metadata database busy); a 4xx, or any error of a POST, is raised at once."""
        data = json.dumps(body).encode() if body is not None else None

        def once() -> dict:
            req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers={
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.load(resp)

        if method.upper() not in IDEMPOTENT or retry_for <= 0:
            return once()
        for attempt in Retrying(retry=retry_if_exception(_transient), stop=stop_after_delay(retry_for),
                                wait=wait_exponential_jitter(multiplier=1, max=10), reraise=True):
            with attempt:
                return once()
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dag_id in {d["dag_id"] for d in self.call("GET", "/api/v2/dags?limit=100")["dags"]}:
                return
            time.sleep(3)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout:.0f}s")

    def run_dag(self, dag_id: str, conf: dict | None = None, timeout: float = 1200, progress=None) -> dict:
        """Trigger a run through the scheduler and wait until it ends; returns the final run.

        ``progress(run)`` is called at every poll, e.g. to print the task states."""
        self.wait_for_dag(dag_id)
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run_id = self.trigger(dag_id, conf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")
            if run["state"] in ("success", "failed"):
                return run
            if progress is not None:
                progress(run)
            time.sleep(5)
        raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")

    def trigger(self, dag_id: str, conf: dict | None = None, retry_for: float = 120.0) -> str:
        """Trigger one run and return its id. The client names the run, which makes the POST safe to repeat:
        a trigger whose answer was lost (the API server busy past the socket timeout) is retried, and a 409
        on the retry means the first one went through."""
        run_id = f"manual__{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S')}__{uuid.uuid4().hex[:8]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        try:
            for attempt in Retrying(retry=retry_if_exception(_transient), stop=stop_after_delay(retry_for),
                                    wait=wait_exponential_jitter(multiplier=1, max=10), reraise=True):
                with attempt:
                    self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
        return run_id

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        return [f"{task}={state}" for task, state in self.task_states(dag_id, run_id).items()
                if state not in ("success", "skipped")]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``task_id`` (with ``[map index]`` for mapped tasks) to state, for one run."""
        tis = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances")
        return {t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t["state"] or "none"
                for t in tis["task_instances"]}
