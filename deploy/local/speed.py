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


def _healthz(base_url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/healthz", timeout=3) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{base_url}/healthz answered {resp.status}")


class PredictionAPI(Service):
    name = "speed-api"
    ready_timeout = 90.0

    def endpoints(self) -> list[Endpoint]:
        s = self.settings.speed
        setting = "LAMBDAML_SPEED__APP_PORT (unset: PORT + 1)" if s.front_proxy else "LAMBDAML_SPEED__PORT"
        return [Endpoint(setting, s.host, s.gunicorn_port)]

    def describe(self) -> str:
        s = self.settings.speed
        behind = "  behind speed-front" if s.front_proxy else ""
        return f"{s.app_url}  ({s.workers} workers x {s.threads} threads){behind}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn), "-c", str(PROJECT_ROOT / "speed" / "gunicorn_conf.py"), "--chdir", str(PROJECT_ROOT),
                "speed.wsgi:app"]
        # numpy's BLAS scores on the CPU (speed.predictor): as many threads as torch's, read when numpy loads.
        threads = str(self.settings.speed.torch_threads)
        return argv, self.settings.child_env(PYTHONPATH=str(PROJECT_ROOT), OPENBLAS_NUM_THREADS=threads)

    def check(self) -> None:
        _healthz(self.settings.speed.app_url)

    def model(self) -> str:
        """The version the service answers with, or why there is none."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.settings.speed.app_url}/readyz", timeout=3) as resp:
                return json.load(resp)["model_version"]
        except urllib.error.HTTPError as exc:
            return f"not ready: {json.load(exc).get('reason', exc.code)}"
        except OSError as exc:
            return f"unreachable: {exc}"


# ------------------------------------------------------------------------------------------------ the front
def front_config(settings: Settings) -> str:
    """haproxy's configuration for the front of the prediction service (pure: settings in, text out).

    At most workers x threads requests are inside gunicorn at once (its threads, so the service's own
    admission control still answers past ``max_in_flight``); up to ``front_max_queue`` more wait here for
    at most ``front_queue_timeout_ms``. A request that finds the queue full gets a 503 with Retry-After at
    once, one that waits longer gets it then. Without it,
    requests past capacity wait in gunicorn's connection queue and the kernel's accept queue until the
    client times out."""
    s = settings.speed
    refusal = json.dumps(front_refusal(settings), separators=(",", ":"))
    return "\n".join([
        "# Written by `lambdaml speed up` from the settings (deploy/local/speed.py: front_config); do not edit.",
        "global",  # maxconn: derived from the open-files limit
        "    nbthread 1",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        # A kept-alive connection to a gunicorn that went away: try a new one (scoring a trip is safe to repeat);
        # refused three times, the request gets the 503 below.
        "    retries 3",
        "    retry-on conn-failure empty-response",
        "    timeout connect 2s",
        "    timeout client 60s",
        f"    timeout server {int(s.request_timeout_s * 1000) + 5000}ms",
        f"    timeout queue {s.front_queue_timeout_ms}ms",
        "    timeout http-keep-alive 30s",
        "frontend speed",
        f"    bind {s.host}:{s.port}",
        "    default_backend gunicorn",
        # The front's own 503s (queue full or timed out, gunicorn down) read like the app's: JSON and Retry-After.
        f"    http-request return status 503 content-type application/json hdr Retry-After {s.retry_after_s} "
        f"string '{refusal}' if {{ queue(gunicorn) ge {s.front_max_queue} }}",
        f"    http-error status 503 content-type application/json hdr Retry-After {s.retry_after_s} string '{refusal}'",
        "backend gunicorn",
        f"    server gunicorn {s.host}:{s.gunicorn_port} maxconn {s.workers * s.threads}",
        "",
    ])


def front_refusal(settings: Settings) -> dict:
    """The body of the front's 503, in the app's error shape."""
    retry = settings.speed.retry_after_s
    return {"error": f"overloaded: every slot and the queue of the service are full; retry after {retry}s",
            "retry_after_s": retry}


def haproxy_bin() -> str:
    from deploy.local.install import which

    found = which("haproxy")
    if not found:
        from deploy.local.process import StackError

        raise StackError("haproxy is missing (the front of the prediction service): run `make install`, "
                         "or set LAMBDAML_SPEED__FRONT_PROXY=false to serve gunicorn on LAMBDAML_SPEED__PORT directly")
    return found


class FrontProxy(Service):
    """haproxy on the service's public port: a bounded queue in front of gunicorn that sheds with 503s."""

    name = "speed-front"
    ready_timeout = 30.0
    depends_on = ("speed-api",)

    @property
    def config_file(self) -> Path:
        return self.settings.runtime_dir / "speed" / "haproxy.cfg"

    def endpoints(self) -> list[Endpoint]:
        s = self.settings.speed
        return [Endpoint("LAMBDAML_SPEED__PORT", s.host, s.port)]

    def describe(self) -> str:
        s = self.settings.speed
        return (f"{s.url} -> {s.app_url}  (haproxy: {s.workers * s.threads} in gunicorn, queue {s.front_max_queue} "
                f"for {s.front_queue_timeout_ms} ms, then 503)")

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(front_config(self.settings))

    def command(self) -> tuple[list[str], dict[str, str]]:
        # -db: stay in the foreground (the pid file is ours), log to stderr (the service's log file).
        return [haproxy_bin(), "-db", "-f", str(self.config_file)], self.settings.child_env()

    def check(self) -> None:
        _healthz(self.settings.speed.url)


class StreamJob(Service):
    name = "speed-stream"
    ready_timeout = 180.0
    depends_on = ("speed-api",)

    @property
    def status_file(self) -> Path:
        from speed.stream import STATUS_FILE

        return self.settings.runtime_dir / "speed" / STATUS_FILE

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


class LakeSinkJob(StreamJob):
    """The lake sink (``speed.lake_sink``): every event topic into the master log, at a lower CPU priority. With
    ``speed.lake_sink`` off it is left out, shown as ``external`` (someone else keeps the master log, or nobody)."""

    name = "speed-lake-sink"
    depends_on = ()

    @property
    def status_file(self) -> Path:
        from speed.lake_sink import STATUS_FILE

        return self.settings.runtime_dir / "speed" / STATUS_FILE

    @property
    def external(self) -> bool:
        return not self.settings.speed.lake_sink

    def describe(self) -> str:
        s = self.settings
        if not s.speed.lake_sink:
            return "off (LAMBDAML_SPEED__LAKE_SINK=false)"
        return f"every topic -> {s.master_events_uri} ({s.speed.lake_sink_trigger}, nice {s.speed.lake_sink_nice})"

    def command(self) -> tuple[list[str], dict[str, str]]:
        from core.spark import spark_home

        env = self.settings.child_env(PYTHONPATH=str(PROJECT_ROOT), SPARK_HOME=str(spark_home()))
        return [sys.executable, "-m", "speed.lake_sink"], env

    def check(self) -> None:
        if self.external:
            return
        super().check()


SPEED_SERVICES: tuple[type[Service], ...] = (PredictionAPI, FrontProxy, StreamJob, LakeSinkJob, Dashboard)


def service_processes(settings: Settings) -> tuple[type[Service], ...]:
    """The prediction service alone: gunicorn, and haproxy in front of it when ``speed.front_proxy`` is on."""
    return (PredictionAPI, FrontProxy) if settings.speed.front_proxy else (PredictionAPI,)


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
