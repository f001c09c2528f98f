"""Latency of ``POST /v1/predict`` under open-loop load: the Flask+gunicorn floor, micro-batched and naive.

Four servers run side by side, each on a private port of its own and as a process group of its own,
all under ``speed/gunicorn_conf.py`` with the same workers and threads:

- ``floor``: ``bench/floor_app.py``, a constant answer — the cost of Flask and gunicorn alone;
- ``floor_model``: ``bench/floor_app.py``'s ``model_app()``, which parses and validates the body, computes the
  features and runs the model's forward pass, one request a pass, and nothing else (no admission control, metrics,
  micro-batching or model watcher) — the least a handler that scores costs;
- ``micro_batched``: the real service (``speed.wsgi:app``), concurrent requests share forward passes;
- ``naive``: the real service with ``micro_batching=false``, one forward pass per request.

The real service scores a model of the size production trains (``core.model.ModelConfig()``) with
random weights — inference costs the same as with trained ones — loaded the way production does it:
the artifact goes to the lake and is announced on a models topic of the benchmark's own.

vegeta (Go, built once into ``~/.cache/lambdaml/bin``) sends single-trip requests at constant rates,
open loop: a slow answer does not slow the sender. The machine is shared and its load drifts, so the
servers are up at once (an idle one costs next to no CPU) and measured in interleaved rounds:
each round runs every server in turn at the same rate, and the run of median p99 of each server
counts. Each run follows a short warm-up at the same rate, and records the CPU time gunicorn's
processes spent per request and, for the real service, the sizes of its forward passes
(``/metrics``). Then the servers step up through the search rates together, each until
p99 goes over the limit or a request fails — a rate over the limit is measured once more before
that server's search stops. Then, ``--refine`` times, each server is run at the midpoint (on a
``--resolution`` grid) between its last rate that held and its first that did not, which moves
one of the two: the last rate that held is its max sustainable throughput. The floor's
is the ceiling: no handler under the same config goes faster, so floor / naive bounds what
micro-batching can gain over naive on the machine. vegeta runs
on the same cores as gunicorn. ``--variant`` reruns the search for the micro-batched service with
other settings (e.g. ``batch_max_wait_ms=0.5``, ``workers=1,threads=32``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import requests
import typer

from bench import common
from core import gotool, kafka, lake
from core.s3 import delete_prefix
from core.settings import PROJECT_ROOT, Settings, SpeedSettings, get_settings
from deploy.local.speed import SPEED_SERVICES, PredictionAPI, service_processes, wait_for_model
from deploy.local.stack import Stack

NAME = "endpoint"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"
MODEL_VERSION = "bench-random"
REQUEST_DAY = dt.date(2026, 1, 5)
# Targets: at the overhead rate, micro-batched p99 at most this much over the floor's; and a max rate at p99 <= the
# limit of at least this share of the floor's. (Micro-batched over naive was the old goal: on two cores the floor
# itself reaches only 2x naive, so no handler could show the 3x once asked for.)
P99_OVER_FLOOR_MS = 3.0
MAX_RATE_OF_FLOOR = 0.9
BATCH_HISTOGRAMS = ("lambdaml_batch_trips", "lambdaml_batch_requests")


# ------------------------------------------------------------------------------------------- private speed layer
def production_size_artifact(seed: int = 0) -> bytes:
    """A model artifact of the size production trains (``ModelConfig()``), with random weights."""
    import torch

    from core.model import ModelConfig, WideAndDeep
    from core.registry import Artifact
    from workloads.taxi.features import spec_version

    torch.manual_seed(seed)
    config = ModelConfig()
    model = WideAndDeep(config, label_mean=6.5)
    return Artifact(model.state_dict(), config.to_dict(), spec_version(), metrics={"seed": seed}).to_bytes()


def uncommitted(*paths: str) -> list[str]:
    """Files under ``paths`` that differ from the commit ``common.write_result`` records: measured, not committed."""
    out = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=False)
    return [line[3:] for line in out.stdout.splitlines()]


def with_speed(settings: Settings, **fields: Any) -> Settings:
    """``settings`` with these ``speed`` fields, validated and marked as set (children read them from the env)."""
    validated = SpeedSettings.model_validate(settings.speed.model_dump() | fields)
    speed = settings.speed.model_copy(update={name: getattr(validated, name) for name in fields})
    return settings.model_copy(update={"speed": speed})


class PrivateSpeedLayer:
    """A runtime folder, port, topics and served model of the benchmark's own; all removed on exit.

    A developer's speed layer (``lambdaml speed up``) keeps running untouched beside it.
    """

    def __init__(self, base: Settings, port: int, label: str, extra_topics: tuple[str, ...] = (),
                 front_proxy: bool = False):
        self.unique = uuid.uuid4().hex[:8]
        self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"lambdaml-bench-{label}-"))
        self.extra_topics = {name: f"bench.{self.unique}.{name}" for name in extra_topics}
        private = base.model_copy(update={"runtime_dir": self.runtime_dir,
                                          "kafka": base.kafka.prefixed(f"bench.{self.unique}.")})
        self.settings = with_speed(private,
                                   port=port, front_proxy=front_proxy,
                                   lake_sink_path=base.s3.uri("bench", "master", self.unique))
        self.model_uri = self.settings.s3.uri("bench", "speed", self.unique, MODEL_VERSION, "model.pt")

    @property
    def topics(self) -> list[str]:
        return self.settings.kafka.topics + list(self.extra_topics.values())

    def __enter__(self) -> PrivateSpeedLayer:
        from confluent_kafka.admin import AdminClient, NewTopic

        down = []
        for service in Stack(self.settings, ["kafka", "s3"], echo=typer.echo).services:
            try:
                service.check()
            except Exception:  # noqa: BLE001 - any failure means it does not answer
                down.append(service.name)
        if down:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            raise RuntimeError(f"the local stack's {' and '.join(down)} does not answer: run `make stack-up` first")
        kafka.ensure_topics(self.settings)
        if self.extra_topics:
            k = self.settings.kafka
            admin = AdminClient(kafka.client_config(self.settings))
            for future in admin.create_topics([NewTopic(t, num_partitions=k.partitions,
                                                        replication_factor=k.replication_factor)
                                               for t in self.extra_topics.values()]).values():
                future.result()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        from confluent_kafka.admin import AdminClient
        from pyarrow.fs import FileType

        Stack(self.settings, catalog=(*SPEED_SERVICES, FloorAPI, FloorModelAPI), echo=typer.echo).down()
        admin = AdminClient(kafka.client_config(self.settings))
        for future in admin.delete_topics(self.topics).values():
            future.result()
        fs, path = lake.filesystem(self.settings, self.settings.s3.uri("bench", "speed", self.unique))
        if fs.get_file_info(path).type != FileType.NotFound:
            fs.delete_dir(path)
        delete_prefix(self.settings, self.settings.master_events_uri)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        typer.echo(f"removed the private topics bench.{self.unique}.*, the model, the lake sink's output and "
                   f"{self.runtime_dir}")

    def publish_model(self) -> None:
        """Put a production-size artifact in the lake and announce it on the private models topic."""
        from core.registry import sha256

        data = production_size_artifact()
        fs, path = lake.filesystem(self.settings, self.model_uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
        name = self.settings.speed.model_name
        announcement = {"schema_version": 1, "name": name, "version": MODEL_VERSION, "uri": self.model_uri,
                        "sha256": sha256(data), "metrics": {}, "stage": "production",
                        "created_at": dt.datetime.now(dt.UTC).isoformat()}
        producer = kafka.producer(self.settings)
        producer.produce(self.settings.kafka.models_topic, key=name.encode(), value=kafka.encode(announcement))
        if producer.flush(30) != 0:
            raise RuntimeError("could not announce the benchmark model")


def serve_model(settings: Settings, timeout: float = 90.0) -> None:
    """Start the prediction service with ``settings`` and wait until every worker serves the model."""
    Stack(settings, catalog=service_processes(settings), echo=typer.echo).up()
    if wait_for_model(settings, timeout) != MODEL_VERSION:
        raise RuntimeError(f"the service did not load {MODEL_VERSION} within {timeout:.0f}s")
    # /readyz lands on any worker: wait until many answers in a row say ready.
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 10 * settings.speed.workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every worker loaded {MODEL_VERSION} within {timeout:.0f}s")
        ready = requests.get(f"{settings.speed.url}/readyz", timeout=3).status_code == 200
        streak = streak + 1 if ready else 0
        if not ready:
            time.sleep(0.5)


# --------------------------------------------------------------------------------------------------- servers
class FloorAPI(PredictionAPI):
    """``bench/floor_app.py`` under the prediction service's gunicorn config."""

    name = "bench-floor"

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv, env = super().command()
        return argv[:-1] + ["bench.floor_app:app"], env


class FloorModelAPI(FloorAPI):
    """``bench/floor_app.py``'s ``model_app()``: parse, features and the forward pass of one request, nothing else."""

    name = "bench-floor-model"

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv, env = super().command()
        return argv[:-1] + ["bench.floor_app:model_app()"], env


@dataclass(frozen=True)
class Server:
    """One server under test: the real service (``PredictionAPI``) or the floor, with its settings."""

    label: str
    settings: Settings
    api: type[PredictionAPI] = PredictionAPI
    vegeta: Vegeta | None = None  # its load generator, aimed at its port (bench.load brings its own)

    @property
    def real(self) -> bool:
        return self.api is PredictionAPI

    def up(self) -> None:
        if self.real:
            serve_model(self.settings)
        else:
            Stack(self.settings, catalog=(self.api,), echo=typer.echo).up()

    def down(self) -> None:
        catalog = service_processes(self.settings) if self.real else (self.api,)
        Stack(self.settings, catalog=catalog, echo=typer.echo).down()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the gunicorn master and its live workers."""
        pgid = self.api(self.settings).proc.pid()
        total = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
                if int(fields[2]) == pgid:
                    total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------- vegeta
def vegeta_binary(settings: Settings) -> Path:
    """The pinned vegeta, ``go install``-ed into the cache on first use (Go from ``core.gotool``)."""
    target = settings.cache_dir / "bin" / f"vegeta-{VEGETA_VERSION}"
    if not target.exists():
        typer.echo(f"building {VEGETA_MODULE}@{VEGETA_VERSION} into {target} "
                   f"(log: {settings.log_dir}/build-vegeta.log)")
    return gotool.install_module(settings.cache_dir, VEGETA_MODULE, VEGETA_VERSION, "vegeta", target,
                                 settings.log_dir / "build-vegeta.log")


def write_targets(path: Path, url: str, count: int, seed: int) -> None:
    """``count`` varied single-trip bodies (generated trips, as ``lambdaml replay`` sends) as vegeta JSON targets."""
    from batch.replay import plan_day

    plan = plan_day(REQUEST_DAY, count, seed)
    with path.open("w") as out:
        for j in range(len(plan)):
            body = plan.request(j).model_dump_json(exclude={"schema_version"}).encode()
            out.write(json.dumps({"method": "POST", "url": url, "header": {"Content-Type": ["application/json"]},
                                  "body": base64.b64encode(body).decode()}) + "\n")


@dataclass(frozen=True)
class LoadResult:
    rate: float
    requests: int
    success: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    status_codes: dict[str, int]
    errors: list[str]

    def holds(self, p99_limit_ms: float) -> bool:
        return self.success >= 1.0 and self.p99_ms <= p99_limit_ms

    def line(self) -> str:
        return (f"{self.rate:6.0f} rps: p50 {self.p50_ms:6.2f} ms, p90 {self.p90_ms:6.2f} ms, "
                f"p99 {self.p99_ms:7.2f} ms, max {self.max_ms:7.2f} ms, success {self.success:.4f}, "
                f"throughput {self.throughput:7.1f}/s")


class Vegeta:
    def __init__(self, binary: Path, targets: Path, workdir: Path):
        self.binary, self.targets, self.workdir = binary, targets, workdir

    def attack(self, rate: float, seconds: float) -> LoadResult:
        out = self.workdir / "attack.bin"
        subprocess.run([str(self.binary), "attack", "-format=json", f"-targets={self.targets}", f"-rate={rate:g}/1s",
                        f"-duration={seconds:g}s", "-timeout=10s", f"-output={out}"], check=True)
        report = json.loads(subprocess.run([str(self.binary), "report", "-type=json", str(out)], check=True,
                                           capture_output=True, text=True).stdout)
        lat = report["latencies"]
        ms = {key: round(lat[key] / 1e6, 3) for key in ("50th", "90th", "99th", "max", "mean")}
        return LoadResult(rate=rate, requests=report["requests"], success=round(report["success"], 6),
                          throughput=round(report["throughput"], 1), p50_ms=ms["50th"], p90_ms=ms["90th"],
                          p99_ms=ms["99th"], max_ms=ms["max"], mean_ms=ms["mean"],
                          status_codes=report["status_codes"], errors=(report["errors"] or [])[:5])


# --------------------------------------------------------------------------------------------------- batch sizes
def batch_histograms(settings: Settings) -> dict[str, dict[str, float]]:
    """Cumulative bucket counts (and ``sum``) of the batch-size histograms, added up over the workers and models."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{settings.speed.url}/metrics", timeout=5).text
    out: dict[str, dict[str, float]] = {name: {} for name in BATCH_HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        if family.name not in out:
            continue
        for sample in family.samples:
            key = sample.labels["le"] if sample.name.endswith("_bucket") else "sum" \
                if sample.name.endswith("_sum") else None
            if key is not None:
                out[family.name][key] = out[family.name].get(key, 0.0) + sample.value
    return out


def batch_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Forward passes of one run by size bucket (``<=le``), and the mean size."""
    out: dict[str, Any] = {}
    for name in BATCH_HISTOGRAMS:
        b, a = before[name], after[name]
        buckets = sorted((k for k in a if k != "sum"), key=float)
        cumulative = [a[k] - b.get(k, 0.0) for k in buckets]
        passes = cumulative[-1] if cumulative else 0.0
        below = [0.0] + cumulative[:-1]
        per_bucket = {f"<={float(k):g}": int(c - p) for k, c, p in zip(buckets, cumulative, below) if c - p}
        mean = round((a["sum"] - b.get("sum", 0.0)) / passes, 2) if passes else None
        out[name.removeprefix("lambdaml_")] = {"forward_passes": int(passes), "mean": mean, "histogram": per_bucket}
    return out


# --------------------------------------------------------------------------------------------------- runs
@dataclass
class ServerRuns:
    """What one server did at each offered rate, and where its rate search stopped."""

    load_average_1m: float  # of the machine, before the servers started: other work shares the cores
    rounds: dict[float, list[LoadResult]] = field(default_factory=dict)  # every run at a rate, in order
    server_side: dict[float, list[dict[str, Any]]] = field(default_factory=dict)  # CPU per request, batch sizes
    retries: dict[float, LoadResult] = field(default_factory=dict)  # second tries of rates over the limit
    searched: bool = False
    max_sustainable: LoadResult | None = None
    first_failure: LoadResult | None = None

    @property
    def held_rate(self) -> float | None:
        return self.max_sustainable.rate if self.max_sustainable else None

    @property
    def failed_rate(self) -> float | None:
        return self.first_failure.rate if self.first_failure else None

    @property
    def runs(self) -> dict[float, LoadResult]:
        """The run of median p99 at each rate: what the comparisons use."""
        return {rate: common.median_run(runs, lambda r: r.p99_ms) for rate, runs in self.rounds.items()}

    def add(self, rate: float, result: LoadResult, side: dict[str, Any]) -> None:
        self.rounds.setdefault(rate, []).append(result)
        self.server_side.setdefault(rate, []).append(side)

    def to_json(self) -> dict[str, Any]:
        runs = self.runs
        out: dict[str, Any] = {"load_average_1m_before": self.load_average_1m, "runs": {}}
        for rate, rounds in sorted(self.rounds.items()):
            chosen = rounds.index(runs[rate])
            out["runs"][f"{rate:g}"] = asdict(runs[rate]) | self.server_side[rate][chosen] | {
                "rounds": [{"p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "success": r.success} | side
                           for r, side in zip(rounds, self.server_side[rate])]}
        if self.retries:
            out["retries"] = {f"{rate:g}": asdict(r) for rate, r in sorted(self.retries.items())}
        if self.searched:
            best = self.max_sustainable
            out["max_sustainable"] = (None if best is None else
                                      {"rate": best.rate, "throughput": best.throughput, "p99_ms": best.p99_ms})
            out["first_failing_rate"] = self.first_failure.rate if self.first_failure else None
        return out


class Bench:
    """Runs servers side by side: all are up at once, and each round gives every server the same load in
    turn, so that other work on the shared machine falls on all of them alike."""

    def __init__(self, duration_s: float, warmup_s: float, p99_limit_ms: float, rounds: int, refine: int = 0,
                 resolution: float = 25.0):
        self.duration_s, self.warmup_s, self.p99_limit_ms, self.rounds = duration_s, warmup_s, p99_limit_ms, rounds
        self.refine, self.resolution = refine, resolution

    def compare(self, servers: list[Server], rates: list[float], search: list[float]) -> dict[str, ServerRuns]:
        """``rounds`` runs of each server at each of ``rates``, interleaved; then the real services step up
        through ``search`` together, each until a rate does not hold for it (twice) — the floor too: its max rate
        is the ceiling of any handler under this gunicorn config on this machine."""
        load = round(os.getloadavg()[0], 2)
        out = {s.label: ServerRuns(load, searched=bool(search)) for s in servers}
        for s in servers:
            typer.echo(f"== {s.label}: {s.settings.speed.workers} workers x {s.settings.speed.threads} threads, "
                       f"micro_batching={s.settings.speed.micro_batching}, "
                       f"batch_max_wait_ms={s.settings.speed.batch_max_wait_ms:g}, {s.settings.speed.url}")
        try:
            for s in servers:
                s.up()
            for rate in rates:
                for i in range(self.rounds):
                    typer.echo(f"  -- {rate:g}/s, round {i + 1} of {self.rounds}")
                    for s in servers:
                        self._measure(s, rate, out[s.label])
            searching = [s for s in servers if out[s.label].searched]
            if searching:
                typer.echo(f"  searching the max rate at p99 <= {self.p99_limit_ms:g} ms and no failure")
            for rate in search:
                for s in list(searching):
                    if not self._step(s, rate, out[s.label]):
                        searching.remove(s)
                if not searching:
                    break
            # Then halve the gap between the last rate that held and the first that did not, server by server in
            # turn, ``refine`` times: the grid alone leaves, e.g., 750 and 1,000 with nothing measured between.
            for _ in range(self.refine):
                probes = {s.label: probe for s in servers if out[s.label].searched
                          and (probe := bisect_rate(out[s.label].held_rate, out[s.label].failed_rate,
                                                    self.resolution)) is not None}
                if not probes:
                    break
                typer.echo(f"  between the last rate that held and the first that did not: "
                           f"{', '.join(f'{label} {rate:g}/s' for label, rate in probes.items())}")
                for s in servers:
                    if s.label in probes:
                        self._step(s, probes[s.label], out[s.label])
        finally:
            for s in servers:
                s.down()
        return out

    def _step(self, server: Server, rate: float, runs: ServerRuns) -> bool:
        """One rate of the search (a run at it already done is reused; one over the limit is measured once
        more): whether it held. Moves ``runs``' bounds of the max rate."""
        result = runs.runs.get(rate) or self._measure(server, rate, runs)
        if not result.holds(self.p99_limit_ms):
            typer.echo("  over the limit: once more, in case other work on the machine got in the way")
            result = runs.retries[rate] = self._measure(server, rate, runs, retry=True)
        if result.holds(self.p99_limit_ms):
            if runs.max_sustainable is None or rate > runs.max_sustainable.rate:
                runs.max_sustainable = result
            return True
        if runs.first_failure is None or rate < runs.first_failure.rate:
            runs.first_failure = result
        return False

    def _measure(self, server: Server, rate: float, out: ServerRuns, retry: bool = False) -> LoadResult:
        """One run at ``rate`` after a warm-up, recorded in ``out`` (with what the server did, unless a retry)."""
        assert server.vegeta is not None, f"{server.label} has no load generator"
        server.vegeta.attack(rate, self.warmup_s)
        before = batch_histograms(server.settings) if server.real else None
        cpu = server.cpu_seconds()
        result = server.vegeta.attack(rate, self.duration_s)
        side: dict[str, Any] = {"server_cpu_ms_per_request": round((server.cpu_seconds() - cpu) / result.requests
                                                                   * 1000, 3)}
        if before is not None:
            side["batches"] = batch_delta(before, batch_histograms(server.settings))
        if not retry:
            out.add(rate, result, side)
        sizes = f", mean trips/pass {side['batches']['batch_trips']['mean']}" if before is not None else ""
        typer.echo(f"  {server.label:14s} {result.line()}, server CPU {side['server_cpu_ms_per_request']} ms/request"
                   f"{sizes}")
        return result


def bisect_rate(held: float | None, failed: float | None, resolution: float) -> float | None:
    """The next rate to try between the highest that held and the lowest that did not: their midpoint, on a
    ``resolution`` grid; None when they are no more than ``resolution`` apart (or the search found no bound)."""
    if held is None or failed is None or failed - held <= resolution:
        return None
    mid = int((held + failed) / 2 / resolution + 0.5) * resolution  # halves round up
    return mid if held < mid < failed else None


def parse_variant(spec: str) -> dict[str, str]:
    """``batch_max_wait_ms=5,threads=32`` to ``{"batch_max_wait_ms": "5", "threads": "32"}``."""
    fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    unknown = set(fields) - set(SpeedSettings.model_fields)
    if not fields or unknown:
        raise typer.BadParameter(f"{spec!r}: use name=value[,name=value] with names of SpeedSettings")
    return fields


def _rates(text: str) -> list[float]:
    return sorted(float(r) for r in text.split(","))


def check_target(value: float | None, limit: float, below: bool) -> dict[str, Any]:
    """A measured value against its target: ``<= limit`` if ``below``, else ``>= limit``."""
    met = value is not None and (value <= limit if below else value >= limit)
    return {"value": None if value is None else round(value, 3), "target": f"{'<=' if below else '>='} {limit:g}",
            "met": met}


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rates: Annotated[str, typer.Option(help="Offered loads (requests/s) measured for every server.")] = "100,250,500",
    search_rates: Annotated[str, typer.Option(help="Rates stepped through, up, for the max sustainable throughput "
                                                   "of each server (runs already done are reused).")]
    = "100,250,500,750,1000,1500,2000,3000",
    refine: Annotated[int, typer.Option(min=0, help="Times the gap between the last rate that held and the first "
                                                    "that did not is halved after the stepped search.")] = 4,
    resolution: Annotated[float, typer.Option(help="Rates the refinement tries lie on this grid (requests/s); it "
                                                   "stops when the gap is this narrow.")] = 25.0,
    duration: Annotated[float, typer.Option(help="Seconds of each measured run.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds of untimed load at the same rate before each run.")] = 2.0,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved runs of every server at each of --rates; the "
                                                    "run of median p99 is compared.")] = 3,
    p99_limit_ms: Annotated[float, typer.Option(help="Latency limit of the rate search.")] = 20.0,
    overhead_rate: Annotated[float, typer.Option(help="Rate at which p99 is compared with the floor.")] = 500.0,
    workers: Annotated[int | None, typer.Option(help="gunicorn workers (default: Settings.speed).")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per worker (default: Settings.speed).")] = None,
    batch_max_wait_ms: Annotated[float | None, typer.Option(help="Micro-batch wait (default: Settings.speed).")]
    = None,
    variant: Annotated[list[str] | None, typer.Option(
        help="Extra micro-batched settings to search, e.g. 'batch_max_wait_ms=5' or 'threads=32,workers=3'; "
             "repeatable.")] = None,
    targets: Annotated[int, typer.Option(help="Distinct request bodies vegeta cycles through.")] = 1000,
    port: Annotated[int, typer.Option(help="Private port of the servers under test.")] = 18200,
    seed: Annotated[int, typer.Option(help="Seed of the generated trips.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Measure p50/p90/p99 of POST /v1/predict at fixed offered rates, and the max rate at p99 <= the limit."""
    overrides = {name: value for name, value in (("workers", workers), ("threads", threads),
                                                 ("batch_max_wait_ms", batch_max_wait_ms)) if value is not None}
    variants = [parse_variant(v) for v in variant or []]
    fixed, search = _rates(rates), _rates(search_rates)
    if overhead_rate not in fixed:
        raise typer.BadParameter(f"--overhead-rate {overhead_rate:g} must be one of --rates")
    started = time.monotonic()
    with PrivateSpeedLayer(get_settings(), port, NAME) as layer, \
            tempfile.TemporaryDirectory(prefix="lambdaml-bench-vegeta-") as workdir:
        base = with_speed(layer.settings, **overrides)
        binary = vegeta_binary(base)
        ports = iter(range(port, port + 100, 2))  # each server on its own port and runtime folder, all up at once

        def server(label: str, api: type[PredictionAPI] = PredictionAPI, **fields: Any) -> Server:
            folder = layer.runtime_dir / label.replace(" ", "_").replace(",", "+")
            settings = with_speed(base.model_copy(update={"runtime_dir": folder}), port=next(ports), **fields)
            work = Path(workdir) / folder.name
            work.mkdir()
            vegeta = Vegeta(binary, work / "targets.json", work)
            write_targets(vegeta.targets, f"{settings.speed.url}/v1/predict", targets, seed)
            return Server(label, settings, api, vegeta)

        layer.publish_model()
        runner = Bench(duration, warmup, p99_limit_ms, rounds, refine, resolution)
        compared = runner.compare([server("floor", FloorAPI), server("floor_model", FloorModelAPI),
                                   server("micro_batched", micro_batching=True),
                                   server("naive", micro_batching=False)], fixed, search)
        floor, floor_model = compared["floor"], compared["floor_model"]
        micro, naive = compared["micro_batched"], compared["naive"]
        tuning = []
        for fields in variants:
            label = f"micro_batched {','.join(f'{k}={v}' for k, v in fields.items())}"
            tuned = server(label, micro_batching=True, **fields)
            runs = runner.compare([tuned], [overhead_rate], search)[label]
            tuning.append({"settings": {k: getattr(tuned.settings.speed, k) for k in fields}, **runs.to_json()})
        speed = base.speed

    floor_p99 = floor.runs[overhead_rate].p99_ms
    overhead = {label: runs.runs[overhead_rate].p99_ms - floor_p99 for label, runs in
                (("micro_batched", micro), ("naive", naive))}
    best = {label: runs.max_sustainable.throughput if runs.max_sustainable else 0.0 for label, runs in
            (("floor", floor), ("floor_model", floor_model), ("micro_batched", micro), ("naive", naive))}
    ratios = {f"p99_overhead_ms_vs_floor_at_{overhead_rate:g}rps/micro_batched": overhead["micro_batched"],
              f"p99_overhead_ms_vs_floor_at_{overhead_rate:g}rps/naive": overhead["naive"]}
    speedup = best["micro_batched"] / best["naive"] if best["naive"] else None
    if speedup is not None:
        ratios[f"max_throughput_at_p99<={p99_limit_ms:g}ms/micro_batched_over_naive"] = speedup
    of_floor = best["micro_batched"] / best["floor"] if best["floor"] else None
    if of_floor is not None:
        ratios[f"max_throughput_at_p99<={p99_limit_ms:g}ms/micro_batched_over_floor"] = of_floor
    # The floor answers a constant: no handler under the same config can go faster, so floor/naive bounds the
    # speed-up any micro-batching can show over naive on this machine.
    ceiling = best["floor"] / best["naive"] if best["naive"] else None
    if ceiling is not None:
        ratios[f"max_throughput_at_p99<={p99_limit_ms:g}ms/floor_over_naive"] = ceiling
    # What scoring itself costs: a handler that only parses, computes features and runs the model, against the floor.
    scoring_floor = best["floor_model"] / best["floor"] if best["floor"] else None
    if scoring_floor is not None:
        ratios[f"max_throughput_at_p99<={p99_limit_ms:g}ms/floor_model_over_floor"] = scoring_floor
    # What the service adds to that least scoring handler: admission, metrics, micro-batching, the model watcher.
    of_scoring_floor = best["micro_batched"] / best["floor_model"] if best["floor_model"] else None
    if of_scoring_floor is not None:
        ratios[f"max_throughput_at_p99<={p99_limit_ms:g}ms/micro_batched_over_floor_model"] = of_scoring_floor
    common.write_result(
        NAME,
        parameters={"rates": fixed, "search_rates": search, "refine": refine, "resolution": resolution,
                    "duration_s": duration, "warmup_s": warmup,
                    "rounds": rounds, "design": "the servers up at once, each on its own port; every round "
                                                "runs each in turn at the same rate; the run of median p99 counts",
                    "p99_limit_ms": p99_limit_ms, "overhead_rate": overhead_rate, "targets": targets, "seed": seed,
                    "gunicorn": {"config": "speed/gunicorn_conf.py", "worker_class": "gthread",
                                 "workers": speed.workers, "threads": speed.threads,
                                 "torch_threads": speed.torch_threads},
                    "micro_batching": {"batch_max_size": speed.batch_max_size,
                                       "batch_max_wait_ms": speed.batch_max_wait_ms},
                    "variants": variants, "model": "core.model.ModelConfig() (production size), random weights",
                    "load_generator": f"vegeta {VEGETA_VERSION}, open loop, keep-alive, one trip per request; "
                                      "it shares the machine's cores with gunicorn and with the running local stack",
                    "uncommitted_changes": uncommitted("speed", "core", "deploy"),
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={
            "floor": floor.to_json(), "floor_model": floor_model.to_json(), "micro_batched": micro.to_json(),
            "naive": naive.to_json(), "tuning": tuning,
            "targets": {
                "p99_overhead_ms_micro_batched_vs_floor": check_target(overhead["micro_batched"], P99_OVER_FLOOR_MS,
                                                                       below=True),
                "micro_batched_over_floor_max_throughput": check_target(of_floor, MAX_RATE_OF_FLOOR, below=False),
            },
        },
        ratios=ratios,
        echo=typer.echo,
        summary=[
            common.comparison(f"micro_batched p99 at {overhead_rate:g}/s", micro.runs[overhead_rate].p99_ms,
                              f"floor p99 at {overhead_rate:g}/s", floor_p99, "ms", higher_is_better=False,
                              target=f"p99 <= floor + {P99_OVER_FLOOR_MS:g} ms",
                              met=overhead["micro_batched"] <= P99_OVER_FLOOR_MS),
            common.comparison(f"micro_batched max rate at p99 <= {p99_limit_ms:g} ms", best["micro_batched"],
                              "floor max rate", best["floor"], "requests/s", higher_is_better=True,
                              target=f"ratio >= {MAX_RATE_OF_FLOOR}",
                              met=of_floor is not None and of_floor >= MAX_RATE_OF_FLOOR),
            common.comparison(f"micro_batched max rate at p99 <= {p99_limit_ms:g} ms", best["micro_batched"],
                              "naive max rate", best["naive"], "requests/s", higher_is_better=True),
            common.comparison(f"floor_model (parse, features, forward; nothing else) max rate at p99 <= "
                              f"{p99_limit_ms:g} ms", best["floor_model"], "floor max rate", best["floor"],
                              "requests/s", higher_is_better=True),
            common.comparison(f"micro_batched max rate at p99 <= {p99_limit_ms:g} ms", best["micro_batched"],
                              "floor_model max rate", best["floor_model"], "requests/s", higher_is_better=True),
        ],
        out=out,
    )


if __name__ == "__main__":
    app()
