"""Run one Ray node (`ray start --block`) and start it again if it fails while starting.

The raylet gives its agents about 15 seconds to report their ports and aborts
when they are late, which happens on a busy 2-core machine. This supervisor
runs `ray start --block` in a process group of its own; if the node exits
before it is up, the supervisor stops what that attempt left behind (only that
group) and tries again. Once up, it waits on the node and passes SIGTERM on.

    python -m deploy.local.ray_node --attempts 5 -- <arguments of ray start>
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _stop_group(pgid: int, grace_s: float = 15.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _raylet_state(root: int) -> str | None:
    """State letter of the raylet under ``root`` (``Z``: dead, not reaped), or None if there is none."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm != "raylet" or os.getpgid(int(entry.name)) != root:
                continue
            return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return None


def _wait(child: subprocess.Popen, up_after_s: float) -> tuple[int | None, bool]:
    """Wait on the node: (exit code, False) if it ends or its raylet dies while starting; (None, True) once up."""
    started = time.monotonic()
    seen_raylet = False
    while time.monotonic() - started < up_after_s:
        rc = child.poll()
        if rc is not None:
            return rc, False
        state = _raylet_state(child.pid)
        if state is not None and state != "Z":
            seen_raylet = True
        elif seen_raylet:  # the raylet gave up (agents late); `ray start` takes minutes to notice
            return 1, False
        time.sleep(1.0)
    return None, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=12)
    parser.add_argument("--up-after-s", type=float, default=180.0,
                        help="A node that has run this long counts as started: its exit is final.")
    parser.add_argument("ray_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    ray_args = [a for a in args.ray_args if a != "--"]
    ray = str(Path(sys.executable).parent / "ray")
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        if child is not None:
            _stop_group(child.pid)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # Import what the node's helpers import once, so they find compiled bytecode (PYTHONPYCACHEPREFIX).
    subprocess.run([sys.executable, "-c", "import ray.dashboard.agent, ray.dashboard.dashboard, "
                    "ray._private.runtime_env.agent.main, ray._private.log_monitor, ray.util.client.server"],
                   check=False)
    rc = 1
    for attempt in range(1, args.attempts + 1):
        started = time.monotonic()
        print(f"ray_node: attempt {attempt}/{args.attempts}: ray start {' '.join(ray_args)}", flush=True)
        child = subprocess.Popen([ray, "start", "--block", *ray_args], start_new_session=True)
        rc, up = _wait(child, args.up_after_s)
        if up:
            rc = child.wait()
            print(f"ray_node: the node exited with {rc} after {time.monotonic() - started:.0f}s", flush=True)
            _stop_group(child.pid)
            return rc
        ran = time.monotonic() - started
        _stop_group(child.pid)
        child = None
        print(f"ray_node: the node failed while starting (exit {rc} after {ran:.0f}s); trying again", flush=True)
        time.sleep(2.0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
