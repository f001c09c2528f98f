"""Go, for building the S3 server from its module: the machine's own ``go`` when it is new enough, else the
official toolchain from the Go module proxy.

The Go project publishes every release on the module proxy as the module ``golang.org/toolchain`` (version
``v0.0.1-go1.26.11.linux-amd64``: a zip of the whole Go distribution). It is the very archive ``go`` itself
fetches when a module asks for a newer toolchain (``GOTOOLCHAIN=auto``). When no ``go`` at least
``REQUIRED`` is found, the pinned release is downloaded from the proxy into
``<cache>/go/go<version>.linux-<arch>/`` once, checked against the pins below, and its ``bin/go`` is used.

The pins are the zip's sha256 and its ``go.sum`` hash (``h1:``, the hash the checksum database
sum.golang.org publishes for it; it covers the files inside the zip). Both were read from the proxy and its
checksum-database endpoint (``<proxy>/sumdb/sum.golang.org/lookup/golang.org/toolchain@<version>``); changing
``TOOLCHAIN`` means adding both for each architecture.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# versitygw v1.8.0's go.mod says `go 1.25.0`: an older go refuses to build it (or, with GOTOOLCHAIN=auto,
# switches to a newer one behind our back).
REQUIRED: tuple[int, int, int] = (1, 25, 0)
TOOLCHAIN = "1.26.11"
MODULE = "golang.org/toolchain"
DEFAULT_PROXY = "https://proxy.golang.org"


@dataclass(frozen=True)
class Pin:
    h1: str  # the go.sum line's hash (sum.golang.org)
    sha256: str  # of the zip file
    size: int  # bytes of the zip file


PINS: dict[tuple[str, str, str], Pin] = {
    (TOOLCHAIN, "linux", "amd64"): Pin("h1:KyINmJ/FQdKRmDYGuTAAXkumyeR2DyUlSNHZj7XaLFg=",
                                       "e1edb778de0aa08c8e827f5a873b35a46afe680fb241482c531725b2355e470d",
                                       71_800_213),
    (TOOLCHAIN, "linux", "arm64"): Pin("h1:GFS9FmglLJxMwOSuun3qb8tBjpr8ibzOkt8tBrRLrnk=",
                                       "51902dab7e130b07083119a36ce09e0cc50fdd9d0d64184c24bd302072ad8b70",
                                       68_693_229),
}

# Where a Go installed by hand or by Debian lives when it is not on PATH.
WELL_KNOWN = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


# ----------------------------------------------------------------------------------------------- pure logic
def parse_version(text: str) -> tuple[int, int, int] | None:
    """``go version go1.26.8 linux/amd64`` (or ``go1.26.8``) -> (1, 26, 8); ``go1.24`` -> (1, 24, 0).

    A pre-release sorts before its release, as Go orders them: ``go1.25rc1`` -> (1, 25, -1). A ``devel``
    build or anything unreadable -> None (never chosen: its language version is unknown)."""
    m = re.search(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?(rc\d+|beta\d+)?(?![\w.])", text)
    if not m or "devel" in text.split()[2:3]:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if m.group(4):
        return (major, minor, -1)
    return (major, minor, int(m.group(3) or 0))


def version_text(version: tuple[int, int, int]) -> str:
    major, minor, patch = version
    return f"go{major}.{minor}" + ("rc" if patch < 0 else f".{patch}")


def go_mod_version(go_mod: str) -> tuple[int, int, int]:
    """The Go a module asks for: its go.mod's ``go`` line (``go 1.26.0`` -> (1, 26, 0), ``go 1.24`` -> (1, 24, 0))."""
    m = re.search(r"^go\s+(\d+)\.(\d+)(?:\.(\d+))?\s*$", go_mod, re.MULTILINE)
    if not m:
        raise ValueError("no `go` line in go.mod")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def required_text(required: tuple[int, int, int] = REQUIRED) -> str:
    """``Go 1.25.0``: how the messages name what is needed."""
    return "Go " + ".".join(map(str, required))


def go_arch(machine: str | None = None) -> str:
    """Go's name for the CPU architecture (``platform.machine()`` by default)."""
    machine = (machine or platform.machine()).lower()
    if machine not in _ARCHES:
        raise RuntimeError(f"no Go toolchain is pinned for the CPU {machine!r} (pinned: amd64, arm64): install "
                           f"{required_text()}+ for it and put its bin/ on PATH, then rerun")
    return _ARCHES[machine]


def module_version(version: str, goos: str, arch: str) -> str:
    return f"v0.0.1-go{version}.{goos}-{arch}"


def proxy_base(goproxy: str | None) -> str:
    """The first HTTP(S) entry of a ``GOPROXY`` value (``,`` or ``|`` separated), else proxy.golang.org.
    ``off`` and ``direct`` are not places a toolchain can come from."""
    for entry in re.split(r"[,|]", goproxy or ""):
        entry = entry.strip().rstrip("/")
        if entry.startswith(("https://", "http://")):
            return entry
    return DEFAULT_PROXY


def zip_url(proxy: str, version: str, goos: str, arch: str) -> str:
    return f"{proxy}/{MODULE}/@v/{module_version(version, goos, arch)}.zip"


@dataclass(frozen=True)
class Found:
    """A ``go`` binary and what ``go version`` said about it."""

    path: str
    version: tuple[int, int, int] | None
    said: str = ""

    def describe(self) -> str:
        return f"{self.path} ({version_text(self.version) if self.version else self.said.strip() or 'unknown'})"


def choose(found: Iterable[Found], required: tuple[int, int, int] = REQUIRED) -> Found | None:
    """The first ``go`` that is at least ``required``; None when every one is older, unknown or absent."""
    for go in found:
        if go.version is not None and go.version >= required:
            return go
    return None


def h1_of_zip(path: Path) -> str:
    """The ``h1:`` hash of a module zip, as ``go.sum`` and sum.golang.org hold it (golang.org/x/mod's
    dirhash.HashZip: sha256 over the sorted lines ``<sha256 hex>  <file name>\\n`` of the files in the zip)."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(i.filename for i in z.infolist() if not i.is_dir()):
            if "\n" in name:
                raise RuntimeError(f"{path.name}: file name with a line break: {name!r}")
            file_hash = hashlib.sha256()
            with z.open(name) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    file_hash.update(block)
            summary.update(f"{file_hash.hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


# ------------------------------------------------------------------------------------------- the machine
def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: the answer is about this binary, and the build uses exactly it (no switching).
    env = dict(os.environ, GOTOOLCHAIN="local")
    env.pop("GOROOT", None)  # each go finds its own root next to its binary
    return env


def probe(path: str) -> Found:
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60, env=_go_env(), check=False)
        said = (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        said = f"does not run: {exc}"
    return Found(path, parse_version(said), said)


def on_machine() -> list[Found]:
    """Every distinct ``go`` on PATH and in the usual install folders."""
    paths = [p for p in (shutil.which("go"), *WELL_KNOWN) if p and os.access(p, os.X_OK)]
    seen, found = set(), []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            found.append(probe(p))
    return found


def toolchain_dir(cache_dir: Path, version: str = TOOLCHAIN, goos: str = "linux", arch: str | None = None) -> Path:
    return cache_dir / "go" / f"go{version}.{goos}-{arch or go_arch()}"


@dataclass(frozen=True)
class Go:
    """The ``go`` to build with, and where it came from (for the install line)."""

    path: str
    version: tuple[int, int, int]
    source: str  # "on this machine", "cached", "downloaded"
    detail: str = ""

    def describe(self) -> str:
        return f"{version_text(self.version)} ({self.source}{': ' + self.detail if self.detail else ''})"


def plan(found: list[Found], cached: Found | None,
         required: tuple[int, int, int] = REQUIRED) -> tuple[str, Found | None]:
    """What to build with: ``("machine", go)`` when a ``go`` of the machine is new enough, else
    ``("cached", go)`` when the pinned toolchain is in the cache already, else ``("download", None)``."""
    chosen = choose(found, required)
    if chosen is not None:
        return "machine", chosen
    if cached is not None and cached.version is not None and cached.version >= required:
        return "cached", cached
    return "download", None


def ensure(cache_dir: Path, log: Callable[[str], None] = lambda _line: None,
           required: tuple[int, int, int] = REQUIRED) -> Go:
    """A ``go`` at least ``required``: the machine's own, else the pinned toolchain (downloaded once)."""
    if required > parse_version(f"go{TOOLCHAIN}"):  # type: ignore[operator]
        raise RuntimeError(f"{required_text(required)} is needed, newer than the pinned go{TOOLCHAIN}: raise "
                           "core.gotool.TOOLCHAIN (and its pins), or put a newer Go on PATH")
    found = on_machine()
    for go in found:
        log(f"found go: {go.describe()}")
    what, go = plan(found, None, required)
    if what == "machine" and go is not None and go.version is not None:
        return Go(go.path, go.version, "on this machine", go.path)
    arch = go_arch()
    target = toolchain_dir(cache_dir, arch=arch)
    binary = target / "bin" / "go"
    cached = probe(str(binary)) if (target / ".complete").is_file() and binary.is_file() else None
    what, go = plan(found, cached, required)
    if what == "cached" and go is not None and go.version is not None:
        log(f"using the cached toolchain {target}")
        return Go(go.path, go.version, "cached", str(target))
    too_old = ", ".join(f.describe() for f in found) or "none on PATH"
    log(f"no {required_text(required)}+ here ({too_old}); downloading go{TOOLCHAIN} for linux/{arch}")
    detail = download(target, TOOLCHAIN, "linux", arch, log)
    got = probe(str(binary))
    if got.version is None or got.version < required:
        raise RuntimeError(f"the downloaded toolchain {binary} does not run as go{TOOLCHAIN}: {got.said!r}")
    return Go(str(binary), got.version, "downloaded", detail)


def download(target: Path, version: str, goos: str, arch: str, log: Callable[[str], None]) -> str:
    """Fetch, verify and unpack the pinned toolchain into ``target``; returns what was done, in words."""
    pin = PINS.get((version, goos, arch))
    if pin is None:
        raise RuntimeError(f"no pinned hash for go{version} {goos}/{arch}: install {required_text()}+ "
                           "yourself and put its bin/ on PATH, then rerun")
    proxy = proxy_base(os.environ.get("GOPROXY"))
    url = zip_url(proxy, version, goos, arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        archive = Path(tmp) / "toolchain.zip"
        log(f"GET {url}")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, archive.open("wb") as out:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except OSError as exc:
            raise RuntimeError(f"downloading the Go toolchain from {url} failed: {exc}. The S3 server is built "
                               f"with {required_text()}+: allow that host (or set GOPROXY to a proxy "
                               "that serves golang.org/toolchain), or install Go and put it on PATH") from exc
        size = archive.stat().st_size
        if digest.hexdigest() != pin.sha256:
            raise RuntimeError(f"{url}: sha256 {digest.hexdigest()} ({size} bytes), expected {pin.sha256} "
                               f"({pin.size} bytes); the proxy served other bytes than the pinned release")
        h1 = h1_of_zip(archive)
        if h1 != pin.h1:
            raise RuntimeError(f"{url}: go.sum hash {h1}, expected {pin.h1} (sum.golang.org)")
        log(f"verified: sha256 {pin.sha256}, go.sum {pin.h1}")
        staging = Path(tmp) / "go"
        unpack(archive, staging, f"{MODULE}@{module_version(version, goos, arch)}/")
        (staging / ".complete").write_text(f"{url}\n{pin.h1}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    # Older pinned toolchains are dead weight (about 250 MB each).
    for stale in target.parent.glob(f"go*.{goos}-{arch}"):
        if stale != target and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    took = time.monotonic() - started
    log(f"unpacked into {target} in {took:.0f}s")
    return f"{size / 1e6:.0f} MB from {proxy.split('://', 1)[-1]}, sha256 and go.sum hash checked"


def unpack(archive: Path, dest: Path, prefix: str) -> None:
    """Extract a toolchain zip, without its ``golang.org/toolchain@<version>/`` prefix, keeping exec bits."""
    dest.mkdir(parents=True)
    root = dest.resolve()
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if not info.filename.startswith(prefix):
                raise RuntimeError(f"{archive.name}: {info.filename} is outside {prefix}")
            rel = info.filename[len(prefix):]
            if not rel:
                continue
            path = (dest / rel).resolve()
            if root not in path.parents:
                raise RuntimeError(f"{archive.name}: {info.filename} points outside the toolchain folder")
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, path.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            # Go marks bin/ and pkg/tool/ executable itself when it unpacks a toolchain; so do we.
            if rel.startswith(("bin/", "pkg/tool/")):
                mode |= 0o755
            path.chmod(mode or 0o644)


def install_module(cache_dir: Path, module: str, version: str, command: str, target: Path, log_file: Path,
                   note: Callable[[str], None] | None = None) -> Path:
    """``go install module@version`` and move its ``command`` binary to ``target``; returns ``target``.

    Go comes from ``ensure`` (the machine's own when new enough, else the pinned toolchain), with
    ``GOTOOLCHAIN=local`` so that it never switches to another behind our back. Its output goes to
    ``log_file``; a failure raises with the log's last lines. ``note`` hears which Go was used."""
    if target.exists():
        return target
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        def say(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        go = ensure(cache_dir, say)
        if note is not None:
            note(go.describe())
        gobin = target.parent / ".gobin"
        gobin.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOBIN=str(gobin), CGO_ENABLED="0", GOFLAGS="-trimpath", GOTOOLCHAIN="local")
        env.pop("GOROOT", None)  # the chosen go finds its own root
        cmd = [go.path, "install", "-v", f"{module}@{version}"]
        say(f"$ {' '.join(cmd)}  (GOBIN={gobin}, {go.describe()})")
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"building {module}@{version} with {go.describe()} failed (exit {result.returncode}); "
                           f"the last lines of {log_file}:\n{tail}")
    (gobin / command).rename(target)
    return target
