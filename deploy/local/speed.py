"""The speed layer as local processes: the prediction service (gunicorn) and the streaming job,
and beside them the monitoring dashboard (``deploy.local.dashboard``).

They run on top of the local stack (Kafka and S3 must be up) and are managed
like its services: pid files, logs under the runtime folder, idempotent up,
readiness checks that make a real call, and a down that stops only them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from deploy.local.dashboard import Dashboard
from deploy.local.services import Endpoint, Service


class PredictionAPI(Service):
    name = "speed-api"
    ready_timeout = 90.0

    def endpoints(self) -> list[Endpoint]:
        s = self.settings.speed
        return [Endpoint("LAMBDAML_SPEED__PORT", s.host, s.port)]

    def describe(self) -> str:
        return f"{self.settings.speed.url}  ({self.settings.speed.workers} workers x {self.settings.speed.threads} threads)"

    def command(self) -> tuple[list[str], dict[str, str]]:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn), "-c", str(PROJECT_ROOT / "speed" / "gunicorn_conf.py"), "--chdir", str(PROJECT_ROOT),
                "speed.wsgi:app"]
        return argv, self.settings.child_env(PYTHONPATH=str(PROJECT_ROOT))

    def check(self) -> None:
        import urllib.request

        with urllib.request.urlopen(f"{self.settings.speed.url}/healthz", timeout=3) as resp:
            if resp.status != 200:
                raise RuntimeError(f"/healthz answered {resp.status}")

    def model(self) -> str:
        """The version the service answers with, or why there is none."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.settings.speed.url}/readyz", timeout=3) as resp:
                return json.load(resp)["model_version"]
        except urllib.error.HTTPError as exc:
            return f"not ready: {json.load(exc).get('reason', exc.code)}"
        except OSError as exc:
            return f"unreachable: {exc}"


class StreamJob(Service):
    name = "speed-stream"
    ready_timeout = 180.0
    depends_on = ("speed-api",)

    @property
    def status_file(self) -> Path:
        return self.settings.runtime_dir / "speed" / "stream-status.json"

    def describe(self) -> str:
        k = self.settings.kafka
        return f"{k.trip_requests_topic} -> {k.trip_predictions_topic} ({self.settings.speed.stream_trigger})"

    def prepare(self) -> None:
        self.status_file.unlink(missing_ok=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core.spark import spark_home

        env = self.settings.child_env(PYTHONPATH=str(PROJECT_ROOT), SPARK_HOME=str(spark_home()))
        return [sys.executable, "-m", "speed.stream"], env

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def check(self) -> None:
        """Ready once the query has started and its sink is in place (it writes the status file)."""
        status = self.status()
        if status.get("state") not in ("started", "running"):
            raise RuntimeError("the streaming query has not started yet")


SPEED_SERVICES: tuple[type[Service], ...] = (PredictionAPI, StreamJob, Dashboard)


def wait_for_model(settings: Settings, timeout: float = 60.0) -> str | None:
    """The served model version once the service has loaded one, or None after ``timeout``."""
    api = PredictionAPI(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = api.model()
        if not version.startswith(("not ready", "unreachable")):
            return version
        time.sleep(1.0)
    return None
