"""Where the JVM jars live: one folder per Maven recipe in deploy/local/maven.

A folder is named after the hash of its recipe, so that changing a version
resolves a fresh set, and the same recipe is shared by every clone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings

RECIPES_DIR = PROJECT_ROOT / "deploy" / "local" / "maven"
JAR_SETS = ("kafka", "spark")


def recipe(name: str) -> Path:
    return RECIPES_DIR / name / "pom.xml"


def jar_set_dir(settings: Settings, name: str) -> Path:
    digest = hashlib.sha256(recipe(name).read_bytes()).hexdigest()[:12]
    return settings.jar_dir / f"{name}-{digest}"


def is_resolved(settings: Settings, name: str) -> bool:
    return (jar_set_dir(settings, name) / ".complete").exists()


def resolve(settings: Settings, name: str, log: Path | None = None) -> Path:
    """Copy the recipe's runtime jars from Maven Central (through ~/.m2) into the cache.

    Maven's output goes to ``log`` (default: ``<runtime>/logs/install-jars-<name>.log``); a failure shows
    its last lines."""
    target = jar_set_dir(settings, name)
    if is_resolved(settings, name):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is missing: run `make install` or `apt-get install maven`.")
    log = log or settings.log_dir / f"install-jars-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        out = Path(tmp) / "jars"
        cmd = [
            mvn, "-B", "-ntp", "-f", str(recipe(name)), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={out}",
        ]
        with log.open("a") as sink:
            sink.write(f"$ {' '.join(cmd)}\n")
            sink.flush()
            result = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            last = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            raise RuntimeError(f"resolving the {name} jars failed (exit {result.returncode}: {' '.join(cmd)}); "
                               f"the last lines of {log}:\n{last}")
        (out / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    # Sets from older recipes are dead weight (the AWS bundle alone is ~600 MB).
    for stale in target.parent.glob(f"{name}-*"):
        if stale != target and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return target


def classpath(settings: Settings, name: str) -> str:
    """A JVM classpath wildcard for the set, e.g. ``/.../kafka-ab12/*``."""
    return str(jar_set_dir(settings, name) / "*")


def jars(settings: Settings, name: str) -> list[Path]:
    return sorted(jar_set_dir(settings, name).glob("*.jar"))
