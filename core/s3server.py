"""The local S3 server: Versity S3 Gateway, built from its pinned Go module.

It keeps objects as plain files and gives S3A correct directory semantics
(an empty "directory" exists and is a directory), which Spark's committers
and the Hive metastore rely on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from core.settings import Settings

MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSION = "v1.8.0"


def binary_path(settings: Settings) -> Path:
    return settings.cache_dir / "bin" / f"versitygw-{VERSION}"


def is_built(settings: Settings) -> bool:
    return binary_path(settings).exists()


def build(settings: Settings) -> Path:
    """``go install`` the pinned module into the cache (Go's module and build caches make re-runs fast)."""
    target = binary_path(settings)
    if target.exists():
        return target
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin:/usr/lib/go/bin")
    if go is None:
        raise RuntimeError("Go is missing: the S3 server is built from its Go module. Install Go 1.24+ first.")
    gobin = target.parent / ".gobin"
    gobin.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(gobin), CGO_ENABLED="0", GOFLAGS="-trimpath")
    result = subprocess.run([go, "install", f"{MODULE}@{VERSION}"], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"building {MODULE}@{VERSION} failed:\n{result.stderr[-3000:]}")
    (gobin / "versitygw").rename(target)
    return target
