"""Load test of ``POST /v1/predict``: rising offered load until admission control sheds, and past it.

The real prediction service (``speed.wsgi:app`` under ``speed/gunicorn_conf.py``, the settings'
workers, threads and admission limits, behind its haproxy front unless ``--no-front``) serves a
production-size model on a private port, runtime
folder and topics of its own (``bench.endpoint.PrivateSpeedLayer``); a developer's speed layer keeps
running beside it. vegeta (built from its Go module into ``~/.cache/lambdaml/bin``) sends varied
single-trip bodies (generated trips, as ``lambdaml replay`` sends) at constant rates, open loop, on
loopback, one step after another, each after a short warm-up at its rate.

Per step: the offered rate, the rate vegeta sent, the achieved rate (200s per second), p50/p99 of
all answers and of the 200s, the status codes, whether every rejection (503/429) carried
``Retry-After``, transport errors, the workers' RSS before and after, and whether the same worker
processes are alive. The result names the highest step held (every answer a 200 and p99 <= the
limit) and what the steps past it did. vegeta runs on the same cores as gunicorn.

    python -m bench.load                       # the full run: about 3 minutes
    python -m bench.load --rates 50,200 --duration 2 --warmup 0.5    # a quick look
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import psutil
import typer

from bench import common
from bench.endpoint import PrivateSpeedLayer, Server, uncommitted, vegeta_binary, with_speed, write_targets
from core.settings import Settings, get_settings
from deploy.local.speed import PredictionAPI

NAME = "load"
REJECTIONS = (429, 503)


# --------------------------------------------------------------------------------------------------- pure logic
@dataclass(frozen=True)
class Step:
    """One offered rate, as the clients saw it and as the workers lived through it."""

    offered_rps: float
    requests: int
    sent_rps: float
    achieved_rps: float  # 200s per second of the step
    p50_ms: float | None
    p99_ms: float | None
    ok_p50_ms: float | None
    ok_p99_ms: float | None
    status_codes: dict[str, int]
    rejections: int
    rejections_with_retry_after: int
    transport_errors: int
    error_samples: list[str]
    worker_rss_mib_before: dict[str, float]
    worker_rss_mib_after: dict[str, float]
    workers_unchanged: bool

    def holds(self, p99_limit_ms: float) -> bool:
        """Every request answered 200, and p99 within the limit."""
        return (self.requests > 0 and self.status_codes.get("200", 0) == self.requests
                and self.p99_ms is not None and self.p99_ms <= p99_limit_ms)

    def line(self) -> str:
        codes = " ".join(f"{code}:{n}" for code, n in sorted(self.status_codes.items()))
        rss = ", ".join(f"{self.worker_rss_mib_before[p]:.0f}->{self.worker_rss_mib_after.get(p, 0):.0f}"
                        for p in self.worker_rss_mib_before)
        return (f"offered {self.offered_rps:6.0f}/s sent {self.sent_rps:7.1f}/s achieved {self.achieved_rps:7.1f}/s"
                f"  p50 {_ms(self.p50_ms)} p99 {_ms(self.p99_ms)} (200s: p99 {_ms(self.ok_p99_ms)})  [{codes}]"
                f"  Retry-After {self.rejections_with_retry_after}/{self.rejections}"
                f"  RSS MiB {rss}  workers {'same' if self.workers_unchanged else 'CHANGED'}")


def _ms(value: float | None) -> str:
    return "    -   " if value is None else f"{value:7.2f}ms"


def percentiles(latencies_ns: list[int]) -> tuple[float | None, float | None]:
    """p50 and p99 in milliseconds (None without samples)."""
    if not latencies_ns:
        return None, None
    p50, p99 = np.percentile(np.asarray(latencies_ns, dtype=np.float64) / 1e6, [50, 99])
    return round(float(p50), 3), round(float(p99), 3)


def summarize(results: list[dict[str, Any]], offered_rps: float, seconds: float) -> dict[str, Any]:
    """The client side of a step from vegeta's JSON results (``vegeta encode --to json``)."""
    codes: dict[str, int] = {}
    rejections = with_retry_after = transport = 0
    errors: list[str] = []
    all_ns, ok_ns = [], []
    for r in results:
        code = int(r["code"])
        codes[str(code)] = codes.get(str(code), 0) + 1
        if code == 0:
            transport += 1
            if len(errors) < 5:
                errors.append(r.get("error") or "no answer")
            continue
        all_ns.append(int(r["latency"]))
        if code == 200:
            ok_ns.append(int(r["latency"]))
        elif code in REJECTIONS:
            rejections += 1
            headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
            with_retry_after += bool(headers.get("retry-after"))
        elif len(errors) < 5:
            errors.append(f"HTTP {code}")
    if results:
        stamps = np.array([np.datetime64(r["timestamp"].rstrip("Z"), "ns") for r in results])
        span_s = (stamps.max() - stamps.min()) / np.timedelta64(1, "s")
        sent_rps = round((len(results) - 1) / span_s, 1) if span_s > 0 else 0.0
    else:
        sent_rps = 0.0
    p50, p99 = percentiles(all_ns)
    ok_p50, ok_p99 = percentiles(ok_ns)
    return {"offered_rps": offered_rps, "requests": len(results), "sent_rps": sent_rps,
            "achieved_rps": round(len(ok_ns) / seconds, 1), "p50_ms": p50, "p99_ms": p99, "ok_p50_ms": ok_p50,
            "ok_p99_ms": ok_p99, "status_codes": codes, "rejections": rejections,
            "rejections_with_retry_after": with_retry_after, "transport_errors": transport, "error_samples": errors}


def verdict(steps: list[Step], p99_limit_ms: float) -> dict[str, Any]:
    """The highest step held, the first that did not, and how the steps past the held one degraded."""
    held = [s for s in steps if s.holds(p99_limit_ms)]
    best = max(held, key=lambda s: s.offered_rps) if held else None
    past = [s for s in steps if best is None or s.offered_rps > best.offered_rps]
    first_failure = next((s for s in past if not s.holds(p99_limit_ms)), None)
    return {
        "max_held_rps": best.offered_rps if best else None,
        "max_held_p99_ms": best.p99_ms if best else None,
        "first_failing_rps": first_failure.offered_rps if first_failure else None,
        "past_max": [{"offered_rps": s.offered_rps, "achieved_rps": s.achieved_rps,
                      "rejected_share": round(s.rejections / s.requests, 4) if s.requests else None,
                      "ok_p99_ms": s.ok_p99_ms, "p99_ms": s.p99_ms,
                      "other_errors": s.requests - s.status_codes.get("200", 0) - s.rejections}
                     for s in past],
        "every_rejection_had_retry_after": all(s.rejections == s.rejections_with_retry_after for s in steps),
        "no_transport_or_5xx_errors_besides_rejections": all(
            s.transport_errors == 0 and all(c in ("200", "503", "429") for c in s.status_codes) for s in steps),
        "workers_unchanged_throughout": all(s.workers_unchanged for s in steps),
    }


# --------------------------------------------------------------------------------------------------- I/O
def worker_rss(settings: Settings) -> dict[str, float]:
    """RSS (MiB) of each gunicorn worker of the service, by pid."""
    master = PredictionAPI(settings).proc.pid()
    if master is None:
        raise RuntimeError("the prediction service under test is not running")
    return {str(p.pid): round(p.memory_info().rss / 2**20, 1) for p in psutil.Process(master).children()}


class Attack:
    def __init__(self, binary: Path, targets: Path, workdir: Path):
        self.binary, self.targets, self.workdir = binary, targets, workdir

    def run(self, rate: float, seconds: float) -> list[dict[str, Any]]:
        """Every result of ``seconds`` of open-loop load at ``rate``/s, as vegeta's JSON records."""
        out = self.workdir / "attack.bin"
        subprocess.run([str(self.binary), "attack", "-format=json", f"-targets={self.targets}", f"-rate={rate:g}/1s",
                        f"-duration={seconds:g}s", "-timeout=10s", f"-output={out}"], check=True)
        text = subprocess.run([str(self.binary), "encode", "--to", "json", str(out)], check=True,
                              capture_output=True, text=True).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def measure(attack: Attack, settings: Settings, rate: float, seconds: float, warmup_s: float) -> Step:
    if warmup_s > 0:
        attack.run(rate, warmup_s)
    before = worker_rss(settings)
    client = summarize(attack.run(rate, seconds), rate, seconds)
    after = worker_rss(settings)
    return Step(**client, worker_rss_mib_before=before, worker_rss_mib_after=after,
                workers_unchanged=set(before) == set(after))


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rates: Annotated[str, typer.Option(help="Offered loads (requests/s), stepped through upwards.")]
    = "100,200,300,400,600,800,1200,1600,2400",
    duration: Annotated[float, typer.Option(help="Seconds of each measured step.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds of untimed load at the same rate before each step.")] = 2.0,
    p99_limit_ms: Annotated[float, typer.Option(help="A step holds with every answer a 200 and p99 within this.")]
    = 20.0,
    workers: Annotated[int | None, typer.Option(help="gunicorn workers (default: Settings.speed).")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per worker (default: Settings.speed).")] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Admission limit per worker (default: Settings.speed).")]
    = None,
    targets: Annotated[int, typer.Option(help="Distinct request bodies vegeta cycles through.")] = 1000,
    port: Annotated[int, typer.Option(help="Private port of the service under test.")] = 18300,
    front: Annotated[bool, typer.Option(help="Through the service's front (haproxy, as `lambdaml speed up` runs "
                                             "it), or straight at gunicorn.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the generated trips.")] = 11,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Step the offered load on POST /v1/predict up and report where it holds and how it sheds past that."""
    steps_rps = sorted(float(r) for r in rates.split(","))
    overrides = {k: v for k, v in (("workers", workers), ("threads", threads), ("max_in_flight", max_in_flight))
                 if v is not None}
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    steps: list[Step] = []
    with PrivateSpeedLayer(get_settings(), port, NAME, front_proxy=front) as layer, \
            tempfile.TemporaryDirectory(prefix="lambdaml-bench-load-") as workdir:
        settings = with_speed(layer.settings, **overrides)
        attack = Attack(vegeta_binary(settings), Path(workdir) / "targets.json", Path(workdir))
        write_targets(attack.targets, f"{settings.speed.url}/v1/predict", targets, seed)
        layer.publish_model()
        server = Server("service", settings)
        s = settings.speed
        front_line = (f"through the front (haproxy: queue {s.front_max_queue} for {s.front_queue_timeout_ms} ms)"
                      if s.front_proxy else "straight at gunicorn")
        typer.echo(f"== {front_line}; {s.workers} workers x {s.threads} threads, max_in_flight {s.max_in_flight}, "
                   f"max_pending_trips {s.max_pending_trips}; {len(steps_rps)} steps of {duration:g}s "
                   f"(+{warmup:g}s warm-up)")
        try:
            server.up()
            for i, rate in enumerate(steps_rps, 1):
                step = measure(attack, settings, rate, duration, warmup)
                steps.append(step)
                typer.echo(f"  [{i}/{len(steps_rps)}] {step.line()}")
        finally:
            server.down()
    result = verdict(steps, p99_limit_ms)
    typer.echo(f"held up to {result['max_held_rps']} rps (p99 <= {p99_limit_ms:g} ms, every answer a 200); "
               f"first step past it: {result['first_failing_rps']}")
    heaviest = steps[-1] if steps else None
    best = result["max_held_rps"]
    common.write_result(
        NAME,
        parameters={"rates": steps_rps, "duration_s": duration, "warmup_s": warmup, "p99_limit_ms": p99_limit_ms,
                    "targets": targets, "seed": seed,
                    "service": {"config": "speed/gunicorn_conf.py", "front_proxy": s.front_proxy,
                                "front_max_queue": s.front_max_queue,
                                "front_queue_timeout_ms": s.front_queue_timeout_ms,
                                "workers": s.workers, "threads": s.threads,
                                "torch_threads": s.torch_threads, "max_in_flight": s.max_in_flight,
                                "max_pending_trips": s.max_pending_trips, "retry_after_s": s.retry_after_s,
                                "batch_max_size": s.batch_max_size, "batch_max_wait_ms": s.batch_max_wait_ms},
                    "model": "core.model.ModelConfig() (production size), random weights",
                    "load_generator": "vegeta, open loop, keep-alive, one trip per request, on loopback; it shares "
                                      "the machine's cores with gunicorn and with the running local stack",
                    "load_average_before": load_before,
                    "uncommitted_changes": uncommitted("speed", "core", "deploy"),
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={"steps": [asdict(st) for st in steps], "verdict": result},
        ratios={},
        echo=typer.echo,
        summary=[common.comparison(
            f"achieved rate at {heaviest.offered_rps:g}/s offered", heaviest.achieved_rps,
            "max rate held (p99 <= limit, all 200)", best, "requests/s", higher_is_better=True,
            target="every answer a 200 or a 503/429 with Retry-After (no timeout, no 5xx), workers unchanged",
            met=result["every_rejection_had_retry_after"] and result["no_transport_or_5xx_errors_besides_rejections"]
            and result["workers_unchanged_throughout"])] if heaviest else [],
        out=out,
    )


if __name__ == "__main__":
    app()
