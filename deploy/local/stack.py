"""Bring the local stack up, report its health, bring it down.

``up`` is idempotent: a service that is already running and answering is
left alone. Services without dependencies start together; each is waited for
until a real client call succeeds. ``down`` stops only the processes this
stack started, by the pids it recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core import jars, s3server
from core.settings import Settings
from deploy.local.process import StackError, port_open
from deploy.local.services import Service, services_for

Printer = Callable[[str], None]

# Readiness probes fail on purpose until a service is up; their clients' error logs are noise.
for _noisy in ("thrift.transport.TSocket", "pyhive", "botocore", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)


def _first_line(exc: Exception | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class ServiceStatus:
    name: str
    state: str  # "ready", "external", "down", "starting", "unhealthy"
    pid: int | None
    endpoint: str
    log: str
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state in ("ready", "external")


class Stack:
    def __init__(
        self,
        settings: Settings,
        only: Iterable[str] | None = None,
        echo: Printer = _print,
        with_dependencies: bool = True,
        catalog: tuple[type[Service], ...] | None = None,
    ):
        self.settings = settings
        self.echo = echo
        services = [cls(settings) for cls in (catalog or services_for(settings))]
        if only:
            wanted = set(only)
            unknown = wanted - {s.name for s in services}
            if unknown:
                raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
            if with_dependencies:  # starting a service needs what it depends on; stopping does not
                for s in services:
                    if s.name in wanted:
                        wanted.update(s.depends_on)
            services = [s for s in services if s.name in wanted]
        self.services = services
        self._launched_at: dict[str, float] = {}

    # ----------------------------------------------------------------- up
    def up(self) -> float:
        started = time.monotonic()
        self.settings.runtime_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_binaries()
        pending = list(self.services)
        launched: list[tuple[Service, bool]] = []
        ready: set[str] = set()
        while pending or launched:
            for service in list(pending):
                if all(d in ready or d not in self._names for d in service.depends_on):
                    launched.append((service, self._launch(service)))
                    pending.remove(service)
            if not launched:
                raise StackError(f"dependency cycle among {[s.name for s in pending]}")
            # Wait first for what a not-yet-started service depends on, so it can start early.
            blocking = {d for p in pending for d in p.depends_on}
            launched.sort(key=lambda item: item[0].name not in blocking)
            service, fresh = launched.pop(0)
            self._wait_ready(service, fresh=fresh)
            service.after_ready()
            ready.add(service.name)
        took = time.monotonic() - started
        self.echo(f"up: all {len(self.services)} services ready in {took:.1f}s")
        return took

    @property
    def _names(self) -> set[str]:
        return {s.name for s in self.services}

    def _ensure_binaries(self) -> None:
        needed = {"kafka": "kafka", "thrift": "spark", "spark-master": "spark"}
        for svc in self.services:
            name = needed.get(svc.name.split("-")[0] if svc.name.startswith("kafka-") else svc.name)
            if name and not svc.external and not jars.is_resolved(self.settings, name):
                self.echo(f"  resolving {name} jars from Maven Central (cached in {self.settings.jar_dir}) ...")
                jars.resolve(self.settings, name)
            if svc.name == "s3" and not svc.external and not s3server.is_built(self.settings):
                self.echo(f"  building the S3 server {s3server.MODULE}@{s3server.VERSION} ...")
                s3server.build(self.settings)

    def _launch(self, service: Service) -> bool:
        """Start the service unless it runs already. Returns True if it was started now."""
        if service.external:
            self.echo(f"  {service.name:8s} external at {service.describe()}")
            return False
        if service.proc.pid() is not None:
            self.echo(f"  {service.name:8s} already running (pid {service.proc.pid()})")
            return False
        for ep in service.endpoints():
            if port_open(ep.host, ep.port):
                raise StackError(
                    f"{service.name}: port {ep.port} on {ep.host} is already in use by a process this stack "
                    f"did not start. Stop it, or pick another port with {ep.setting}=<port>."
                )
        service.prepare()
        argv, env = service.command()
        service.home.mkdir(parents=True, exist_ok=True)
        pid = service.proc.start(argv, env, cwd=service.home)
        self._launched_at[service.name] = time.monotonic()
        self.echo(f"  {service.name:8s} starting (pid {pid}, log {service.proc.log_file})")
        return True

    def _wait_ready(self, service: Service, fresh: bool) -> None:
        timeout = 10.0 if service.external else service.ready_timeout
        t0 = time.monotonic()
        last_note = t0
        last_error: Exception | None = None
        while True:
            if not service.external and service.proc.pid() is None:
                raise StackError(
                    f"{service.name} exited while starting. Last lines of {service.proc.log_file}:\n"
                    f"{service.proc.log_tail()}"
                )
            try:
                service.check()
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
            now = time.monotonic()
            if now - t0 > timeout:
                if service.external:
                    raise StackError(
                        f"{service.name}: the external server at {service.describe()} is unreachable "
                        f"({_first_line(last_error)}). Check {service.external_setting}."
                    )
                raise StackError(
                    f"{service.name} did not become ready within {timeout:.0f}s (last error: {_first_line(last_error)}). "
                    f"Log: {service.proc.log_file}\n{service.proc.log_tail()}"
                )
            if now - last_note >= 10:
                self.echo(f"  {service.name:8s} waiting for readiness ({now - t0:.0f}s)")
                last_note = now
            time.sleep(1.0)
        if fresh:
            since = self._launched_at.get(service.name, t0)
            self.echo(f"  {service.name:8s} ready in {time.monotonic() - since:.1f}s — {service.describe()}")
        elif not service.external:
            self.echo(f"  {service.name:8s} ready — {service.describe()}")

    # ----------------------------------------------------------------- status
    def status(self) -> list[ServiceStatus]:
        out = []
        for s in self.services:
            pid = None if s.external else s.proc.pid()
            state, detail = "down", ""
            if s.external or pid is not None:
                try:
                    s.check()
                    state = "external" if s.external else "ready"
                except Exception as exc:  # noqa: BLE001
                    state, detail = "unhealthy", str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            out.append(ServiceStatus(s.name, state, pid, s.describe(), str(s.proc.log_file), detail))
        return out

    # ----------------------------------------------------------------- down
    def down(self) -> list[str]:
        stopped = []
        for s in reversed(self.services):
            if s.external:
                continue
            if s.proc.stop(timeout=45.0 if s.name in ("mariadb", "airflow") else 30.0):
                self.echo(f"  {s.name:8s} stopped")
                stopped.append(s.name)
        return stopped
