"""The Python environment, before there is one: `make venv` runs this with the machine's Python 3.11.

Standard library only. It

1. checks that this Python is 3.11 (pyproject.toml: ``requires-python = ">=3.11,<3.12"``);
2. gets uv: the pinned wheel from PyPI (its Simple API), checked against its sha256, unpacked into
   ``~/.cache/lambdaml/uv/<version>/`` once (no pip, no python3-venv, nothing installed as root);
   ``UV=/path/to/uv`` uses another;
3. creates the virtual environment with uv and installs the project (``-e .[dev]``) into it;
4. compiles site-packages to bytecode (``compileall``; already compiled files are skipped).

It prints one line with the time and the size; uv's own output goes to
``<runtime>/logs/install-python.log``, whose last lines are shown if it fails.

    python3 deploy/local/bootstrap.py --venv .venv
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV_VERSION = "0.13.9"
# sha256 of the manylinux wheels of uv on PyPI, by CPU (platform.machine()).
UV_WHEELS = {
    "x86_64": ("uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
               "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19"),
    "aarch64": ("uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
                "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe"),
}
UV_WHEELS["amd64"], UV_WHEELS["arm64"] = UV_WHEELS["x86_64"], UV_WHEELS["aarch64"]
PYTHON_NEEDED = (3, 11)


class BootstrapError(RuntimeError):
    pass


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3]), executable: str = sys.executable) -> None:
    if tuple(version[:2]) != PYTHON_NEEDED:
        have = ".".join(map(str, version))
        raise BootstrapError(
            f"Python {PYTHON_NEEDED[0]}.{PYTHON_NEEDED[1]} is needed (pyproject.toml: requires-python >=3.11,<3.12: "
            f"pyspark 4.2, Airflow 3 and Ray are pinned for it); {executable} is {have}. On Debian 12 the system "
            f"python3 is 3.11; elsewhere install 3.11 and run `make demo PYTHON=/path/to/python3.11`.")


def index_url() -> str:
    """The package index: UV_INDEX_URL or PIP_INDEX_URL when set (a mirror), else PyPI."""
    return (os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")


def wheel_url(index: str, filename: str) -> str:
    """Find ``filename`` on the index's Simple API page of uv (PEP 691 JSON, else the PEP 503 HTML)."""
    request = urllib.request.Request(f"{index}/uv/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = resp.read().decode()
            kind = resp.headers.get("Content-Type", "")
            base = resp.geturl()
    except OSError as exc:
        raise BootstrapError(f"reading {index}/uv/ failed: {exc}{network_hint(exc)}") from exc
    if "json" in kind:
        for f in json.loads(body)["files"]:
            if f["filename"] == filename:
                return urllib.parse.urljoin(base, f["url"])
    else:
        for href in re.findall(r'href="([^"]+)"', body):
            if href.split("#", 1)[0].rsplit("/", 1)[-1] == filename:
                return urllib.parse.urljoin(base, href)
    raise BootstrapError(f"{filename} is not on {index}/uv/")


def network_hint(exc: BaseException) -> str:
    """What to do about a failed download, when the cause says."""
    import ssl

    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return " (no trusted CA certificates: `apt-get install ca-certificates`, or set SSL_CERT_FILE)"
    return " (PyPI must be reachable, or UV_INDEX_URL must name a mirror)"


def fetch_uv(cache: Path, machine: str | None = None) -> Path:
    """The pinned uv binary, downloaded from the index once and checked against its sha256."""
    machine = (machine or platform.machine()).lower()
    target = cache / "uv" / UV_VERSION / "uv"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if machine not in UV_WHEELS:
        raise BootstrapError(f"no uv wheel is pinned for the CPU {machine!r}: install uv {UV_VERSION} "
                             "(pip install uv) and run `make ... UV=/path/to/uv`")
    filename, sha256 = UV_WHEELS[machine]
    url = wheel_url(index_url(), filename)
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            data = resp.read()
    except OSError as exc:
        raise BootstrapError(f"downloading uv from {url} failed: {exc}{network_hint(exc)}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise BootstrapError(f"{url}: sha256 {digest}, expected {sha256}")
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        member = f"uv-{UV_VERSION}.data/scripts/uv"
        binary = wheel.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(".uv.tmp")
    staging.write_bytes(binary)
    staging.chmod(0o755)
    staging.replace(target)
    return target


def human_size(n: float) -> str:
    """Bytes as one short figure: ``512 B``, ``41 kB``, ``412 MB``, ``1.1 GB`` (decimal units, as df -H)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 and unit == "GB" else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def dir_size(path: Path) -> int:
    result = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(result.stdout.split()[0]) if result.returncode == 0 and result.stdout.split() else 0


def run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> str:
    """Run ``cmd`` with its output appended to ``log``; returns that output; raises with its tail on failure."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        start = out.tell()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=ROOT)
    text = log.read_text(errors="replace")[start:]
    if result.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise BootstrapError(f"`{' '.join(cmd)}` failed (exit {result.returncode}); the last lines of {log}:\n{tail}")
    return text


def installed_count(uv_output: str) -> str:
    """``Installed 312 packages`` -> "312 packages installed"; ``Audited`` -> "already installed"."""
    m = re.search(r"Installed (\d+) packages?", uv_output)
    if m:
        return f"{m.group(1)} packages installed"
    m = re.search(r"Audited (\d+) packages?", uv_output)
    return f"{m.group(1)} packages present" if m else "installed"


def compile_site_packages(venv: Path, log: Path, env: dict[str, str]) -> None:
    """Compile every installed module to bytecode, once: where ``PYTHONDONTWRITEBYTECODE`` is set (as on CI
    machines) no process ever writes it, and every new one (an Airflow task, a Spark Python worker, a gunicorn
    worker, each of Ray's) compiles torch, Ray and pandas again as it imports them: 6 s a Ray worker on two cores
    instead of 3. ``compileall`` skips what is compiled already; a few files of some packages' own test data do
    not parse, which it reports and passes over."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    with log.open("a") as out:
        subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", str(site)],
                       stdout=out, stderr=subprocess.STDOUT, env=env, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--extras", default="dev")
    args = parser.parse_args(argv)
    venv = (ROOT / args.venv).resolve()
    runtime = Path(os.environ.get("LAMBDAML_RUNTIME_DIR") or ROOT / ".runtime").expanduser()
    cache = Path(os.environ.get("LAMBDAML_CACHE_DIR") or Path.home() / ".cache" / "lambdaml").expanduser()
    log = runtime / "logs" / "install-python.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        check_python()
        uv = Path(os.environ["UV"]) if os.environ.get("UV") else fetch_uv(cache)
        env = dict(os.environ, VIRTUAL_ENV=str(venv), UV_NO_PROGRESS="1")
        env.pop("PYTHONHOME", None)
        if not (venv / "bin" / "python").exists():
            run_logged([str(uv), "venv", "--python", sys.executable, str(venv)], log, env)
        output = run_logged([str(uv), "pip", "install", "--python", str(venv / "bin" / "python"),
                             "-e", f".[{args.extras}]"], log, env)
        compile_site_packages(venv, log, env)
    except BootstrapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = log.relative_to(Path.cwd()) if log.is_relative_to(Path.cwd()) else log
    where = venv.relative_to(Path.cwd()) if venv.is_relative_to(Path.cwd()) else venv
    print(f"  Python packages: {installed_count(output)} into {where} ({human_size(dir_size(venv))}) with uv "
          f"{UV_VERSION if not os.environ.get('UV') else '(' + os.environ['UV'] + ')'} in "
          f"{human_seconds(time.monotonic() - started)} (log: {shown})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
