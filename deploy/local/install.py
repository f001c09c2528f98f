"""Install what the local stack needs and the machine lacks.

Debian packages (MariaDB, a JRE and a JDK, Maven, npm, haproxy, and Chromium for
the dashboard's browser test) are installed with apt-get when missing; jars are
resolved from Maven Central, the dashboard's chart library (uPlot) from npm, and
the S3 server is built from its Go module (with the Go toolchain from the Go
module proxy when the machine has no Go 1.25+), all into the shared cache; the
Thrift Server's login and read-only classes are compiled there with javac.

Each step prints one line: what it did, how long it took, how much it put on
disk, and the log that holds the tools' own output (apt-get, mvn, go), which is
shown (its last lines) when a step fails.
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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core import jars
from core.settings import Settings
from deploy.local.bootstrap import human_seconds, human_size  # one formatting for every install line

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


class InstallError(RuntimeError):
    """A step failed; the message names the log and holds its last lines."""


# ----------------------------------------------------------------------------------------------- reporting
def shown_path(path: Path, cwd: Path | None = None) -> str:
    """A path relative to the working folder when it is inside it (``.runtime/logs/install-apt.log``)."""
    cwd = cwd or Path.cwd()
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def step_line(label: str, what: str, seconds: float | None = None, log: Path | None = None,
              cwd: Path | None = None) -> str:
    """One install line: ``  Debian packages: 7 installed (412 MB) in 41 s (log: .runtime/logs/...)``."""
    line = f"  {label}: {what}"
    if seconds is not None:
        line += f" in {human_seconds(seconds)}"
    if log is not None:
        line += f" (log: {shown_path(log, cwd)})"
    return line


def log_path(settings: Settings, step: str) -> Path:
    return settings.log_dir / f"install-{step}.log"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return "(no log)"


def dir_size(path: Path) -> int:
    """Bytes under ``path`` (``du``; what the folder takes on disk)."""
    if not path.exists():
        return 0
    result = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    if result.returncode == 0 and result.stdout.split():
        return int(result.stdout.split()[0])
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@contextmanager
def logged(log: Path, title: str) -> Iterator[Callable[..., None]]:
    """Append a step's commands and their whole output to ``log``; yields ``run(cmd, env=..., cwd=...)``.

    A failing command raises ``InstallError`` with the log's last lines and its path."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")

        def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float | None = None) -> None:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=cwd, timeout=timeout)
            out.flush()
            if result.returncode != 0:
                raise InstallError(f"{title}: `{' '.join(cmd)}` failed (exit {result.returncode}). "
                                   f"The last lines of {log}:\n{tail(log)}")

        yield run


# ------------------------------------------------------------------------------------------------ Debian
def missing_packages() -> list[str]:
    missing = [pkg for binary, pkg in SYSTEM_NEEDS.items() if which(binary) is None]
    java = which("java")
    if java and java_major(java) < 17 and "openjdk-17-jre-headless" not in missing:
        missing.append("openjdk-17-jre-headless")
    javac = which("javac")
    if javac and javac_major(javac) < 17 and "openjdk-17-jdk-headless" not in missing:
        missing.append("openjdk-17-jdk-headless")
    return missing


def installed_debs() -> dict[str, int]:
    """Installed Debian packages and their Installed-Size in bytes (dpkg counts KiB)."""
    result = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${binary:Package} ${Installed-Size}\\n"],
                            capture_output=True, text=True)
    out: dict[str, int] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "installed":
            out[parts[1]] = int(parts[2]) * 1024 if len(parts) > 2 and parts[2].isdigit() else 0
    return out


def apt_summary(packages: list[str], before: dict[str, int], after: dict[str, int]) -> str:
    """``7 installed (mariadb-server, ...; 183 packages with dependencies, 1.1 GB)``."""
    new = sorted(set(after) - set(before))
    size = sum(after[p] for p in new)
    return (f"{len(packages)} installed ({', '.join(packages)}; {len(new)} packages with dependencies, "
            f"{human_size(size)})")


def install_system(settings: Settings, echo: Callable[[str], None] = print) -> list[str]:
    """apt-get install what is missing; its output goes to ``install-apt.log``. Returns the packages."""
    packages = missing_packages()
    if not packages:
        echo(step_line("Debian packages", f"all present ({', '.join(sorted(set(SYSTEM_NEEDS.values())))})"))
        return []
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        raise InstallError(f"missing Debian packages {packages}, and this user is not root and has no sudo: run "
                           f"`apt-get install -y --no-install-recommends {' '.join(packages)}` as root, then rerun")
    if shutil.which("apt-get") is None:
        raise InstallError(f"missing packages {packages} and no apt-get: this needs Debian 12 or a derivative "
                           "(see Prerequisites in README.md), or install them with your package manager")
    log = log_path(settings, "apt")
    started = time.monotonic()
    before = installed_debs()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with logged(log, f"apt-get install {' '.join(packages)}") as run:
        run([*prefix, "apt-get", "update"], env=env)
        run([*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages], env=env)
    echo(step_line("Debian packages", apt_summary(packages, before, installed_debs()), time.monotonic() - started,
                   log))
    return packages


# -------------------------------------------------------------------------------------------- the cache
def install_s3_server(settings: Settings, echo: Callable[[str], None] = print) -> None:
    from core import s3server

    target = s3server.binary_path(settings)
    if s3server.is_built(settings):
        echo(step_line("S3 server", f"versitygw {s3server.VERSION} cached ({human_size(target.stat().st_size)}, "
                                    f"{shown_path(target)})"))
        return
    log = log_path(settings, "s3-server")
    started = time.monotonic()
    used: list[str] = []
    try:
        s3server.build(settings, log_file=log, note=used.append)
    except RuntimeError as exc:
        raise InstallError(str(exc)) from exc
    echo(step_line("S3 server", f"versitygw {s3server.VERSION}, {human_size(target.stat().st_size)}, built with "
                                f"{used[0] if used else 'go'}", time.monotonic() - started, log))


def install_thrift_classes(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """The Thrift Server's login and read-only classes, compiled with javac against pyspark's jars."""
    from deploy.local import thrift_auth

    jar = thrift_auth.jar_path(settings)
    if thrift_auth.is_built(settings):
        echo(step_line("Thrift Server classes", f"cached ({human_size(jar.stat().st_size)})"))
        return
    started = time.monotonic()
    thrift_auth.build(settings)
    echo(step_line("Thrift Server classes", f"{human_size(jar.stat().st_size)}, compiled with javac",
                   time.monotonic() - started))


def install_jars(settings: Settings, echo: Callable[[str], None] = print) -> None:
    for name in jars.JAR_SETS:
        folder = jars.jar_set_dir(settings, name)
        if jars.is_resolved(settings, name):
            echo(step_line(f"jars {name}", f"cached ({len(list(folder.glob('*.jar')))} jars, "
                                           f"{human_size(dir_size(folder))})"))
            continue
        log = log_path(settings, f"jars-{name}")
        started = time.monotonic()
        try:
            path = jars.resolve(settings, name, log=log)
        except RuntimeError as exc:
            raise InstallError(str(exc)) from exc
        echo(step_line(f"jars {name}", f"{len(list(path.glob('*.jar')))} jars, {human_size(dir_size(path))}, "
                                       "from Maven Central (through ~/.m2)", time.monotonic() - started, log))


def install_all(settings: Settings, system: bool = True, jar_sets: bool = True,
                echo: Callable[[str], None] = print) -> None:
    """What ``lambdaml install`` runs: each step one line, the tools' output in ``install-*.log``."""
    if system:
        install_system(settings, echo)
    if jar_sets:
        install_jars(settings, echo)
        install_s3_server(settings, echo)
        install_thrift_classes(settings, echo)
        install_dashboard_assets(settings, echo)


def install_dashboard_assets(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """uPlot, pinned, into ``<cache>/npm/uplot-<version>/``: `npm pack` once, checked against its integrity hash."""
    from serving import dashboard

    target = dashboard.asset_dir(settings)
    if all((target / name).is_file() for name in dashboard.UPLOT_FILES):
        echo(step_line("uPlot", f"{dashboard.UPLOT_VERSION} cached ({human_size(dir_size(target))})"))
        return
    npm = which("npm")
    if npm is None:
        raise InstallError("npm is missing: run `lambdaml install` (it installs the Debian package npm).")
    spec = f"uplot@{dashboard.UPLOT_VERSION}"
    log = log_path(settings, "npm")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, logged(log, f"npm pack {spec}") as run:
        run([npm, "pack", spec, "--pack-destination", tmp, "--no-fund", "--no-audit", "--loglevel=warn"], cwd=Path(tmp))
        tarball = Path(tmp) / f"uplot-{dashboard.UPLOT_VERSION}.tgz"
        if not tarball.is_file():
            raise InstallError(f"npm pack {spec} wrote no {tarball.name}; the last lines of {log}:\n{tail(log)}")
        algorithm, expected = dashboard.UPLOT_INTEGRITY.split("-", 1)
        digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if digest != expected:
            raise InstallError(f"{tarball.name}: {algorithm} is {digest}, expected {expected}")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with tarfile.open(tarball) as tar:
            for name, member in dashboard.UPLOT_FILES.items():
                data = tar.extractfile(member)
                if data is None:
                    raise InstallError(f"{tarball.name}: {member} is not a file")
                (staging / name).write_bytes(data.read())
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    echo(step_line("uPlot", f"{dashboard.UPLOT_VERSION}, {human_size(dir_size(target))}, from npm, integrity checked",
                   time.monotonic() - started, log))
