"""The monitoring dashboard as a local process: gunicorn serving ``serving.dashboard``.

It reads MySQL only (as the analyst account), so it depends on no other
process of the speed layer; ``lambdaml speed up|down|status`` manages it with
them (``SPEED_SERVICES``).
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from core.settings import PROJECT_ROOT
from deploy.local.process import StackError
from deploy.local.services import Endpoint, Service


class Dashboard(Service):
    name = "dashboard"
    ready_timeout = 60.0
    threads = 4  # the page fetches its five panels at once; one worker keeps one small pool

    @property
    def url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.monitoring.dashboard_port}"

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("LAMBDAML_MONITORING__DASHBOARD_PORT", self.settings.bind_host,
                         self.settings.monitoring.dashboard_port)]

    def describe(self) -> str:
        return f"{self.url}  (model {self.settings.speed.model_name})"

    def command(self) -> tuple[list[str], dict[str, str]]:
        from serving.dashboard import AssetsMissing, require_assets

        try:
            require_assets(self.settings)
        except AssetsMissing as exc:
            raise StackError(str(exc)) from None
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn), "--workers", "1", "--worker-class", "gthread", "--threads", str(self.threads),
                "--bind", f"{self.settings.bind_host}:{self.settings.monitoring.dashboard_port}",
                "--timeout", "30", "--graceful-timeout", "10", "--error-logfile", "-", "--name", "lambdaml-dashboard",
                "--chdir", str(PROJECT_ROOT), "serving.dashboard:create_app()"]
        return argv, self.settings.child_env(PYTHONPATH=str(PROJECT_ROOT))

    def check(self) -> None:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=3) as resp:
            if resp.status != 200:
                raise RuntimeError(f"/healthz answered {resp.status}")
