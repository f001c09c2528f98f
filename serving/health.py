"""Health of the platform's backing services, as one real client call each."""

from __future__ import annotations

from core.settings import Settings, get_settings

STREAM = "speed-stream"
LAKE_SINK = "speed-lake-sink"


def check_service(name: str, settings: Settings | None = None) -> str:
    """Raise if the named service does not answer; return its endpoint if it does, or why this stack does not run
    it (the Ray head, when searches run elsewhere)."""
    from deploy.local.services import ALL_SERVICES, RayHead, services_for

    settings = settings or get_settings()
    if name in (STREAM, LAKE_SINK):
        return check_stream(settings, name)
    by_name = {cls.name: cls for cls in ALL_SERVICES}
    if name not in by_name:
        raise ValueError(f"unknown service {name!r}; known: {sorted(by_name)}")
    if by_name[name] is RayHead and RayHead not in services_for(settings):
        return ray_elsewhere(settings)
    service = by_name[name](settings)
    service.check()
    return service.describe()


def check_stream(settings: Settings, name: str = STREAM) -> str:
    """A streaming job (the scoring stream or the lake sink) as its status file tells: fine when running or never
    started here; an error naming the last failure when its query failed or is being restarted (the job restarts
    it by itself, with backoff)."""
    from deploy.local.speed import LakeSinkJob, StreamJob

    status = (LakeSinkJob if name == LAKE_SINK else StreamJob)(settings).status()
    if not status:
        return "not started on this host (lambdaml speed up)"
    failure = status.get("last_failure") or {}
    if status.get("state") in ("failed", "restarting"):
        raise RuntimeError(f"the streaming query is {status['state']} after {status.get('restarts', 0)} restart(s); "
                           f"last failure at {failure.get('at')}: {failure.get('error')} (batch after offsets "
                           f"{failure.get('after_offsets')}, {failure.get('repeats', 0)} time(s) in a row)")
    return f"{status.get('state')}, {status.get('batches', 0)} batches, {status.get('restarts', 0)} restart(s)"


def ray_elsewhere(settings: Settings) -> str:
    """Where searches run when the stack runs no Ray head; a Ray named by ``ray.address`` must accept connections
    (its GCS port, or its client server's for ``ray://``)."""
    from deploy.local.process import port_open

    address = settings.ray.address
    if address and address != "local":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if port.isdigit() and not port_open(host, int(port), timeout=5.0):
            raise RuntimeError(f"the Ray at {address} (ray.address) does not accept connections")
        return f"not run by this stack: searches join the Ray at {address} (ray.address)"
    return "not run by this stack: each search starts a Ray of its own (" + (
        "ray.address=local)" if address == "local" else "ray.local_head is off)")
