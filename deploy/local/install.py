"""Install what the local stack needs and the machine lacks.

Debian packages (MariaDB, a JRE and a JDK, Maven, npm, and Chromium for the
dashboard's browser test) are installed with apt-get when missing; jars are
resolved from Maven Central, and the dashboard's chart library (uPlot) from npm,
into the shared cache; the Thrift Server's login and read-only classes are
compiled there with javac.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from core import jars
from core.settings import Settings

# binary -> Debian package that provides it
SYSTEM_NEEDS: dict[str, str] = {
    "mariadbd": "mariadb-server",
    "mariadb": "mariadb-client",
    "java": "openjdk-17-jre-headless",
    "javac": "openjdk-17-jdk-headless",  # compiles the Thrift Server's login and read-only classes
    "mvn": "maven",
    "npm": "npm",
    "chromium": "chromium",
    "haproxy": "haproxy",  # the front of the prediction service
}


def which(binary: str) -> str | None:
    """The path of ``binary`` on PATH or in the sbin folders (Debian puts daemons there)."""
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/sbin")


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def javac_major(javac: str) -> int:
    """The release of a javac (``javac 17.0.15``; JDK 8 and older: ``javac 1.8.0_392``)."""
    result = subprocess.run([javac, "-version"], capture_output=True, text=True)
    m = re.search(r"javac (\d+)(?:\.(\d+))?", result.stdout + result.stderr)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def missing_packages() -> list[str]:
    missing = [pkg for binary, pkg in SYSTEM_NEEDS.items() if which(binary) is None]
    java = which("java")
    if java and java_major(java) < 17 and "openjdk-17-jre-headless" not in missing:
        missing.append("openjdk-17-jre-headless")
    javac = which("javac")
    if javac and javac_major(javac) < 17 and "openjdk-17-jdk-headless" not in missing:
        missing.append("openjdk-17-jdk-headless")
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


def install_thrift_classes(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """The Thrift Server's login and read-only classes, compiled with javac against pyspark's jars."""
    from deploy.local import thrift_auth

    if thrift_auth.is_built(settings):
        echo(f"  Thrift Server classes: cached at {thrift_auth.jar_path(settings)}")
        return
    echo("  Thrift Server classes: compiling with javac ...")
    echo(f"  Thrift Server classes: {thrift_auth.build(settings)}")


def install_jars(settings: Settings, echo: Callable[[str], None] = print) -> None:
    for name in jars.JAR_SETS:
        if jars.is_resolved(settings, name):
            echo(f"  jars {name}: cached at {jars.jar_set_dir(settings, name)}")
            continue
        echo(f"  jars {name}: resolving from Maven Central ...")
        path = jars.resolve(settings, name)
        echo(f"  jars {name}: {len(list(path.glob('*.jar')))} jars in {path}")


def install_dashboard_assets(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """uPlot, pinned, into ``<cache>/npm/uplot-<version>/``: `npm pack` once, checked against its integrity hash."""
    from serving import dashboard

    target = dashboard.asset_dir(settings)
    if all((target / name).is_file() for name in dashboard.UPLOT_FILES):
        echo(f"  uPlot: cached at {target}")
        return
    npm = which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: run `lambdaml install` (it installs the Debian package npm).")
    spec = f"uplot@{dashboard.UPLOT_VERSION}"
    echo(f"  uPlot: npm pack {spec} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        result = subprocess.run([npm, "pack", spec, "--pack-destination", tmp, "--silent"],
                                cwd=tmp, capture_output=True, text=True)
        tarball = Path(tmp) / f"uplot-{dashboard.UPLOT_VERSION}.tgz"
        if result.returncode != 0 or not tarball.is_file():
            raise RuntimeError(f"npm pack {spec} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        algorithm, expected = dashboard.UPLOT_INTEGRITY.split("-", 1)
        digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if digest != expected:
            raise RuntimeError(f"{tarball.name}: {algorithm} is {digest}, expected {expected}")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with tarfile.open(tarball) as tar:
            for name, member in dashboard.UPLOT_FILES.items():
                data = tar.extractfile(member)
                if data is None:
                    raise RuntimeError(f"{tarball.name}: {member} is not a file")
                (staging / name).write_bytes(data.read())
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    echo(f"  uPlot: {target}")
