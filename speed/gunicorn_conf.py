"""gunicorn configuration of the prediction service; every value comes from ``Settings.speed``.

Worker model, chosen on purpose:

- ``gthread`` workers: each worker process serves ``threads`` requests at once,
  and those threads feed one micro-batcher, so concurrent requests share a
  forward pass. PyTorch releases the GIL inside its kernels.
- ``workers`` processes, one model copy each (a few MB here), so a slow batch
  in one worker does not stall the others.
- No ``preload_app``: the app (and torch, its OpenMP pool, the Kafka watcher
  thread and, with ``device=cuda``, the CUDA context) is created in each worker
  after the fork. Forking a process that already initialised torch's thread
  pool or CUDA can hang or fail; this way nothing torch-related crosses a fork.
- ``torch_threads`` intra-op threads per worker (default 1): with several
  workers on few cores, more threads oversubscribe the CPU.
- Metrics: prometheus-client multiprocess mode, so ``/metrics`` adds up workers.
"""

from __future__ import annotations

import os
import shutil

from core.settings import get_settings

_settings = get_settings()
_s = _settings.speed
_metrics_dir = _settings.runtime_dir / "speed" / "prometheus"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"{_s.host}:{_s.gunicorn_port}"  # behind the front (haproxy) unless speed.front_proxy is off
workers = _s.workers
worker_class = "gthread"
threads = _s.threads
preload_app = False
timeout = 60
graceful_timeout = 20
keepalive = 30
backlog = 2048
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "lambdaml-speed"


def child_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
