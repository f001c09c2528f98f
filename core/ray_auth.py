"""Token authentication for the platform's own Ray (the stack's head and nodes, and a search's own Ray).

Ray's GCS and raylet listen on every interface, and Ray runs whatever a connected driver submits. So every Ray
the platform starts requires a token: one random token kept in the runtime folder (mode 0600), which the nodes,
their workers and the platform's drivers read through Ray's own ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH``. A cluster named by ``ray.address`` outside the stack brings its own authentication.
"""

from __future__ import annotations

import os
import secrets

from core.settings import Settings


def token_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a Ray process use the platform's token; the token file is created on first
    use."""
    path = settings.ray_token_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}
