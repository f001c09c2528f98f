"""What the install steps print (one line each, with time, size and log) and the bootstrap's checks (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import bootstrap
from deploy.local.install import apt_summary, human_seconds, human_size, shown_path, step_line


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (512, "512 B"), (41_000, "41 kB"), (56_200_000, "56 MB"),
                                         (1_130_000_000, "1.1 GB"), (6_900_000_000, "6.9 GB"),
                                         (12_400_000_000, "12 GB")])
def test_human_size(n, text):
    assert human_size(n) == text == bootstrap.human_size(n)


@pytest.mark.parametrize(("seconds", "text"), [(0.84, "0.8 s"), (5.2, "5 s"), (59.4, "59 s"), (60, "1 min"),
                                               (107, "1 min 47 s"), (3600, "60 min")])
def test_human_seconds(seconds, text):
    assert human_seconds(seconds) == text


def test_a_step_is_one_line_with_time_and_log_relative_to_the_working_folder(tmp_path: Path):
    log = tmp_path / ".runtime" / "logs" / "install-apt.log"
    line = step_line("Debian packages", "7 installed", 41.2, log, cwd=tmp_path)
    assert line == "  Debian packages: 7 installed in 41 s (log: .runtime/logs/install-apt.log)"
    assert "\n" not in line
    assert step_line("uPlot", "1.6.32 cached") == "  uPlot: 1.6.32 cached"
    assert shown_path(Path("/elsewhere/x.log"), cwd=tmp_path) == "/elsewhere/x.log"


def test_apt_summary_counts_the_dependencies_and_their_size():
    before = {"bash": 7_000_000, "coreutils": 18_000_000}
    after = {**before, "haproxy": 4_300_000, "liblua5.3-0:amd64": 700_000, "mariadb-server": 55_000_000}
    assert apt_summary(["haproxy", "mariadb-server"], before, after) == (
        "2 installed (haproxy, mariadb-server; 3 packages with dependencies, 60 MB)")


def test_bootstrap_wants_python_3_11_and_says_how_to_pick_another():
    bootstrap.check_python((3, 11, 2), "/usr/bin/python3")
    with pytest.raises(bootstrap.BootstrapError, match=r"/usr/bin/python3 is 3\.12\.1.*PYTHON=/path/to/python3\.11"):
        bootstrap.check_python((3, 12, 1), "/usr/bin/python3")
    with pytest.raises(bootstrap.BootstrapError):
        bootstrap.check_python((3, 10, 12), "/usr/bin/python3")


def test_bootstrap_pins_uv_for_both_cpus_and_reads_what_uv_did():
    for machine in ("x86_64", "aarch64", "amd64", "arm64"):
        filename, sha256 = bootstrap.UV_WHEELS[machine]
        assert filename.startswith(f"uv-{bootstrap.UV_VERSION}-") and len(bytes.fromhex(sha256)) == 32
    with pytest.raises(bootstrap.BootstrapError, match="no uv wheel is pinned for the CPU 'riscv64'"):
        bootstrap.fetch_uv(Path("/nonexistent"), machine="riscv64")
    assert bootstrap.installed_count("Resolved 200 packages in 6.14s\nInstalled 200 packages in 3.2s\n") == (
        "200 packages installed")
    assert bootstrap.installed_count("Audited 200 packages in 12ms\n") == "200 packages present"
