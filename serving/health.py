"""Health of the platform's backing services, as one real client call each."""

from __future__ import annotations

from core.settings import Settings, get_settings

STREAM = "speed-stream"
LAKE_SINK = "speed-lake-sink"


def check_service(name: str, settings: Settings | None = None) -> str:
    """Raise if the named service does not answer; return its endpoint if it does."""
    from deploy.local.services import ALL_SERVICES

    settings = settings or get_settings()
    if name in (STREAM, LAKE_SINK):
        return check_stream(settings, name)
    by_name = {cls.name: cls for cls in ALL_SERVICES}
    if name not in by_name:
        raise ValueError(f"unknown service {name!r}; known: {sorted(by_name)}")
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
