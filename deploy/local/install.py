"""Install what the local stack needs and the machine lacks.

Debian packages (MariaDB, a JRE, Maven) are installed with apt-get when
missing; jars are resolved from Maven Central into the shared cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable

from core import jars
from core.settings import Settings

# binary -> Debian package that provides it
SYSTEM_NEEDS: dict[str, str] = {
    "mariadbd": "mariadb-server",
    "mariadb": "mariadb-client",
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
}


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/sbin")


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def missing_packages() -> list[str]:
    missing = [pkg for binary, pkg in SYSTEM_NEEDS.items() if _which(binary) is None]
    java = _which("java")
    if java and java_major(java) < 17 and "openjdk-17-jre-headless" not in missing:
        missing.append("openjdk-17-jre-headless")
    return missing


def install_system(echo: Callable[[str], None] = print) -> list[str]:
    packages = missing_packages()
    if not packages:
        return []
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        raise RuntimeError(f"missing Debian packages {packages}; run as root: apt-get install -y {' '.join(packages)}")
    echo(f"  installing Debian packages: {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env
    )
    return packages


def install_s3_server(settings: Settings, echo: Callable[[str], None] = print) -> None:
    from core import s3server

    if s3server.is_built(settings):
        echo(f"  S3 server: cached at {s3server.binary_path(settings)}")
        return
    echo(f"  S3 server: building {s3server.MODULE}@{s3server.VERSION} with go install ...")
    echo(f"  S3 server: {s3server.build(settings)}")


def install_jars(settings: Settings, echo: Callable[[str], None] = print) -> None:
    for name in jars.JAR_SETS:
        if jars.is_resolved(settings, name):
            echo(f"  jars {name}: cached at {jars.jar_set_dir(settings, name)}")
            continue
        echo(f"  jars {name}: resolving from Maven Central ...")
        path = jars.resolve(settings, name)
        echo(f"  jars {name}: {len(list(path.glob('*.jar')))} jars in {path}")
