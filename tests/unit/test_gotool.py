"""Which Go builds the S3 server: version parsing, the CPU, the choice, the pins and the module hash (pure)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from core import gotool
from core.gotool import Found, choose, go_arch, parse_version, proxy_base, zip_url


@pytest.mark.parametrize(("said", "version"), [
    ("go version go1.26.8 linux/amd64", (1, 26, 8)),
    ("go version go1.19.8 linux/arm64", (1, 19, 8)),  # Debian 12's golang-go
    ("go1.25.0", (1, 25, 0)),
    ("go version go1.24 linux/amd64", (1, 24, 0)),  # a .0 release before Go 1.21 named itself go1.N
    ("go version go1.25rc1 linux/amd64", (1, 25, -1)),  # a release candidate comes before its release
    ("go version go1.26beta2 linux/amd64", (1, 26, -1)),
    ("go version go1.26.8-X:nocoverageredesign linux/amd64", (1, 26, 8)),
    ("go version devel go1.27-3b2f0d5a Tue Nov 3 linux/amd64", None),  # unknown language version: never chosen
    ("bash: go: command not found", None),
    ("", None),
])
def test_parse_version(said, version):
    assert parse_version(said) == version


def test_go_mod_version():
    assert gotool.go_mod_version("module x\n\ngo 1.26.0\n\nrequire (\n)\n") == (1, 26, 0)
    assert gotool.go_mod_version("module x\ngo 1.24\ntoolchain go1.24.4\n") == (1, 24, 0)
    with pytest.raises(ValueError, match="no `go` line"):
        gotool.go_mod_version("module x\n")


def test_the_pinned_toolchain_builds_every_go_module_of_the_repository():
    from core.settings import PROJECT_ROOT

    pinned = parse_version(f"go{gotool.TOOLCHAIN}")
    for go_mod in ("deploy/compose/check/go.mod", "deploy/k8s/check/go.mod"):
        assert gotool.go_mod_version((PROJECT_ROOT / go_mod).read_text()) <= pinned, go_mod


def test_required_version_is_what_versitygw_asks_for():
    # versitygw v1.8.0's go.mod: `go 1.25.0`; the pinned toolchain must satisfy it.
    assert gotool.REQUIRED == (1, 25, 0)
    assert parse_version(f"go{gotool.TOOLCHAIN}") >= gotool.REQUIRED
    assert gotool.required_text() == "Go 1.25.0"


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "arm64"),
                                               ("arm64", "arm64")])
def test_go_arch(machine, arch):
    assert go_arch(machine) == arch


@pytest.mark.parametrize("machine", ["ppc64le", "s390x", "i686", "riscv64"])
def test_an_unpinned_cpu_says_to_install_go_by_hand(machine):
    with pytest.raises(RuntimeError, match=r"install Go 1\.25\.0\+ for it and put its bin/ on PATH"):
        go_arch(machine)


def test_every_pinned_cpu_has_both_hashes():
    for arch in ("amd64", "arm64"):
        pin = gotool.PINS[(gotool.TOOLCHAIN, "linux", arch)]
        assert pin.h1.startswith("h1:") and len(base64.b64decode(pin.h1[3:])) == 32
        assert len(bytes.fromhex(pin.sha256)) == 32 and pin.size > 10_000_000


def test_choose_the_first_new_enough_go():
    old = Found("/usr/bin/go", (1, 19, 8))
    rc = Found("/opt/go-rc/bin/go", (1, 25, -1))
    devel = Found("/opt/devel/bin/go", None, "go version devel ...")
    new = Found("/usr/local/go/bin/go", (1, 26, 8))
    newer = Found("/opt/go/bin/go", (1, 27, 0))
    assert choose([old, rc, devel, new, newer]) == new  # PATH order first, among those new enough
    assert choose([old, rc, devel]) is None  # -> the pinned toolchain is downloaded
    assert choose([]) is None
    assert choose([Found("/x/go", (1, 25, 0))]) == Found("/x/go", (1, 25, 0))  # exactly the minimum will do


def test_plan_prefers_the_machines_go_then_the_cache_then_a_download():
    old, new = Found("/usr/bin/go", (1, 19, 8)), Found("/usr/local/go/bin/go", (1, 26, 8))
    cached = Found("/home/u/.cache/lambdaml/go/go1.26.11.linux-amd64/bin/go", (1, 26, 11))
    assert gotool.plan([old, new], cached) == ("machine", new)
    assert gotool.plan([old], cached) == ("cached", cached)
    assert gotool.plan([], cached) == ("cached", cached)
    assert gotool.plan([old], None) == ("download", None)
    assert gotool.plan([], None) == ("download", None)
    # A cached toolchain that no longer runs (or an older pin) is fetched again.
    assert gotool.plan([old], Found(cached.path, None, "exec format error")) == ("download", None)
    assert gotool.plan([old], Found(cached.path, (1, 24, 4))) == ("download", None)


def test_descriptions_name_the_version_and_where_it_came_from():
    assert Found("/usr/bin/go", (1, 19, 8)).describe() == "/usr/bin/go (go1.19.8)"
    assert Found("/x/go", None, "does not run: [Errno 8]").describe() == "/x/go (does not run: [Errno 8])"
    go = gotool.Go("/usr/local/go/bin/go", (1, 26, 8), "on this machine", "/usr/local/go/bin/go")
    assert go.describe() == "go1.26.8 (on this machine: /usr/local/go/bin/go)"
    assert gotool.toolchain_dir(Path("/c"), "1.26.11", "linux", "arm64") == Path("/c/go/go1.26.11.linux-arm64")


def test_proxy_base_and_url():
    assert proxy_base(None) == proxy_base("") == "https://proxy.golang.org"
    assert proxy_base("https://proxy.golang.org,direct") == "https://proxy.golang.org"
    assert proxy_base("direct") == proxy_base("off") == "https://proxy.golang.org"
    assert proxy_base("https://goproxy.example.com/|https://proxy.golang.org") == "https://goproxy.example.com"
    assert zip_url("https://proxy.golang.org", "1.26.11", "linux", "amd64") == (
        "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go1.26.11.linux-amd64.zip")


def test_h1_of_zip_is_the_go_sum_hash(tmp_path: Path):
    """dirhash.Hash1: sha256 over "<sha256 hex>  <name>\\n" of each file, sorted by name."""
    prefix = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64/"
    files = {f"{prefix}bin/go": b"\x7fELF go", f"{prefix}VERSION": b"go1.99.0\n", f"{prefix}src/a.go": b"package a\n"}
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in reversed(list(files)):  # the zip's own order does not matter
            z.writestr(name, files[name])
    summary = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    expected = "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()
    assert gotool.h1_of_zip(archive) == expected


def test_unpack_strips_the_module_prefix_and_makes_tools_executable(tmp_path: Path):
    prefix = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64/"
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{prefix}bin/go", b"go")  # written without exec bits
        z.writestr(f"{prefix}pkg/tool/linux_amd64/compile", b"compile")
        z.writestr(f"{prefix}src/a.go", b"package a\n")
    dest = tmp_path / "go"
    gotool.unpack(archive, dest, prefix)
    assert (dest / "bin" / "go").read_bytes() == b"go"
    assert (dest / "bin" / "go").stat().st_mode & 0o111
    assert (dest / "pkg" / "tool" / "linux_amd64" / "compile").stat().st_mode & 0o111
    assert not (dest / "src" / "a.go").stat().st_mode & 0o111


def test_unpack_refuses_files_outside_the_toolchain(tmp_path: Path):
    prefix = "golang.org/toolchain@v0.0.1-go1.99.0.linux-amd64/"
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{prefix}../../evil", b"x")
    with pytest.raises(RuntimeError, match="outside the toolchain folder"):
        gotool.unpack(archive, tmp_path / "go", prefix)
    archive2 = tmp_path / "u.zip"
    with zipfile.ZipFile(archive2, "w") as z:
        z.writestr("other/bin/go", b"x")
    with pytest.raises(RuntimeError, match="is outside"):
        gotool.unpack(archive2, tmp_path / "go2", prefix)
