"""Health of the platform's backing services, as one real client call each."""

from __future__ import annotations

from core.settings import Settings, get_settings


def check_service(name: str, settings: Settings | None = None) -> str:
    """Raise if the named service does not answer; return its endpoint if it does."""
    from deploy.local.services import ALL_SERVICES

    settings = settings or get_settings()
    by_name = {cls.name: cls for cls in ALL_SERVICES}
    if name not in by_name:
        raise ValueError(f"unknown service {name!r}; known: {sorted(by_name)}")
    service = by_name[name](settings)
    service.check()
    return service.describe()
