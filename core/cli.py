"""The ``lambdaml`` command line: one entry point for every layer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from core.settings import get_settings

app = typer.Typer(
    help="Lambda-architecture data platform for deep learning: local stack, pipelines, models and queries.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
stack_app = typer.Typer(help="The local stack: Kafka, MariaDB, S3, Spark Thrift Server (Hive), Airflow.",
                        no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(config_app, name="config")
models_app = typer.Typer(help="The model registry: list, show, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")
ModelName = Annotated[str, typer.Option("--name", "-n", help="Registered model name; default: the one the service "
                                                               "serves for taxi (speed.model_name). Bike's: "
                                                               "bike_overtime.")]

Only = Annotated[
    list[str] | None,
    typer.Option("--only", "-s", help="Limit to these services (and what they depend on): "
                 "mariadb, s3, kafka, thrift, airflow (cluster profile: kafka-N, spark-master, spark-worker-N, "
                 "ray-head, ray-worker)."),
]
Profile = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="local (one process per service) or cluster (Spark standalone "
                 "master + workers, a 3-broker Kafka cluster, a Ray head + worker). Default: LAMBDAML_PROFILE, "
                 "else local. Child processes inherit it."),
]


def _stack_settings(profile: str | None):
    """The settings, with the profile of the command line if one was given."""
    if profile is None:
        return get_settings()
    from core.settings import Settings

    if profile not in ("local", "cluster"):
        _fail(f"--profile {profile}: choose local or cluster")
    return Settings(profile=profile)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@stack_app.command("up")
def stack_up(only: Only = None, profile: Profile = None) -> None:
    """Start every service (idempotent), wait until each answers a real client call."""
    from deploy.local.process import StackError
    from deploy.local.stack import Stack

    settings = _stack_settings(profile)
    typer.echo(f"bringing the {settings.profile} stack up under {settings.runtime_dir}")
    try:
        Stack(settings, only).up()
    except StackError as exc:
        _fail(str(exc))
    _print_status(Stack(settings, only))


@stack_app.command("status")
def stack_status(
    only: Only = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    profile: Profile = None,
) -> None:
    """Show each service's state, endpoint and log. Exit 1 if any is not healthy."""
    from deploy.local.stack import Stack

    healthy = _print_status(Stack(_stack_settings(profile), only), as_json=as_json)
    raise typer.Exit(code=0 if healthy else 1)


@stack_app.command("down")
def stack_down(only: Only = None, profile: Profile = None) -> None:
    """Stop the services this stack started (by their pid files). Data is kept."""
    from deploy.local.stack import Stack

    stopped = Stack(_stack_settings(profile), only, with_dependencies=False).down()
    typer.echo(f"stack down: stopped {len(stopped)} service(s)")


def _print_status(stack, as_json: bool = False) -> bool:
    rows = stack.status()
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        typer.echo(f"{'service':14s} {'state':10s} {'pid':>7s}  endpoint")
        for r in rows:
            colour = typer.colors.GREEN if r.healthy else typer.colors.RED
            pid = str(r.pid) if r.pid else "-"
            line = f"{r.name:14s} {typer.style(f'{r.state:10s}', fg=colour)} {pid:>7s}  {r.endpoint}"
            typer.echo(line + (f"  ({r.detail})" if r.detail else ""))
        typer.echo(f"logs: {stack.settings.log_dir}")
    return all(r.healthy for r in rows)


speed_app = typer.Typer(help="The speed layer: prediction service (gunicorn + Flask) and streaming job.",
                        no_args_is_help=True)
app.add_typer(speed_app, name="speed")
SpeedOnly = Annotated[
    list[str] | None,
    typer.Option("--only", "-s", help="Limit to these: speed-api, speed-front, speed-stream, dashboard "
                 "(up also starts what they need)."),
]


@speed_app.command("up")
def speed_up(
    only: SpeedOnly = None,
    model_timeout: Annotated[float, typer.Option(help="Seconds to wait for the service to load a model.")] = 60.0,
) -> None:
    """Start the prediction service and the streaming job on top of Kafka and S3 (idempotent)."""
    from deploy.local.process import StackError
    from deploy.local.speed import SPEED_SERVICES, wait_for_model
    from deploy.local.stack import Stack

    settings = get_settings()
    try:
        Stack(settings, ["kafka", "s3"]).up()
        Stack(settings, only, catalog=SPEED_SERVICES).up()
    except StackError as exc:
        _fail(str(exc))
    version = wait_for_model(settings, model_timeout)
    if version is None:
        typer.secho("the service has no production model yet: run the batch_training DAG, or "
                    "`lambdaml models promote <version>`; it will load it without a restart",
                    fg=typer.colors.YELLOW)
    _print_speed_status(settings, only)


@speed_app.command("status")
def speed_status(only: SpeedOnly = None) -> None:
    """Show the service, its model version, and the stream's last batch. Exit 1 if not healthy."""
    healthy = _print_speed_status(get_settings(), only)
    raise typer.Exit(code=0 if healthy else 1)


@speed_app.command("down")
def speed_down(only: SpeedOnly = None) -> None:
    """Stop the streaming job and the prediction service (its checkpoint is kept)."""
    from deploy.local.speed import SPEED_SERVICES
    from deploy.local.stack import Stack

    stopped = Stack(get_settings(), only, with_dependencies=False, catalog=SPEED_SERVICES).down()
    typer.echo(f"speed down: stopped {len(stopped)} process(es)")


def _print_speed_status(settings, only) -> bool:
    from deploy.local.speed import SPEED_SERVICES, LakeSinkJob, PredictionAPI, StreamJob
    from deploy.local.stack import Stack

    stack = Stack(settings, only, with_dependencies=False, catalog=SPEED_SERVICES)
    healthy = _print_status(stack)
    for svc in stack.services:
        if isinstance(svc, PredictionAPI):
            typer.echo(f"model: {svc.model()}")
        if not isinstance(svc, StreamJob) or svc.external:
            continue
        label = "lake sink" if isinstance(svc, LakeSinkJob) else "stream"
        status = svc.status()
        last = status.get("last")
        if last and isinstance(svc, LakeSinkJob):
            typer.echo(f"lake sink: {status.get('batches', 0)} batches; last {last.get('rows', 0)} rows in "
                       f"{last.get('seconds', 0)}s at {last.get('at', '?')}, {last.get('offsets_behind', '?')} "
                       "offsets behind Kafka")
        elif last:
            typer.echo(f"stream: last batch {json.dumps(last)}")
        if status.get("restarts"):
            failure = status.get("last_failure") or {}
            typer.echo(f"{label}: {status.get('state')}, restarted {status['restarts']} time(s); last failure "
                       f"{failure.get('at', '?')}: {failure.get('error', '?')}")
            if failure.get("repeats", 0) > 1:
                typer.echo(f"{label}: the batch after offsets {json.dumps(failure.get('after_offsets'))} failed "
                           f"{failure['repeats']} times in a row; see the job's log")
    return healthy


query_app = typer.Typer(help="Analyst queries: the Lambda merge of Hive and MySQL, the named SQL in sql/queries/ and "
                             "each workload's in workloads/<name>/queries/ (named <workload>.<query>).",
                        no_args_is_help=True)
app.add_typer(query_app, name="query")


def _print_table(columns: list[str], rows: list[tuple[object, ...]]) -> None:
    """Rows under their column names, aligned; numbers to the right."""
    from decimal import Decimal

    def text_of(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    numeric = [all(isinstance(r[i], int | float | Decimal) and not isinstance(r[i], bool)
                   for r in rows if r[i] is not None) for i in range(len(columns))]
    cells = [[text_of(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.rjust(w) if n else c.ljust(w) for c, n, w in zip(columns, numeric, widths)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.rjust(w) if n else v.ljust(w) for v, n, w in zip(row, numeric, widths)).rstrip())


@query_app.command("zone-stats")
def query_zone_stats(
    zone: Annotated[int, typer.Option("--zone", "-z", help="Pickup zone id of the taxi zone lookup.")],
    days: Annotated[int, typer.Option("--days", "-d", min=1, max=3660, help="Today (UTC) and the days before it.")]
    = 30,
) -> None:
    """Trips, MAE and mean predicted duration of a pickup zone, merged from Hive (archived days) and MySQL (recent)."""
    from serving.merge import zone_stats

    result = zone_stats(get_settings(), zone, days)
    covered = (f"Hive holds the days before {result.covered_until}" if result.covered_until
               else "no batch coverage yet: every day from MySQL")
    typer.echo(f"zone {zone}, last {days} day(s): {result.first_day} .. {result.last_day} ({covered})")
    rows = [(p.source, f"{p.first_day} .. {p.last_day}", p.sums.trips, p.sums.completed, p.sums.mean_predicted_s,
             p.sums.mae_s) for p in result.parts]
    total = result.total
    rows.append(("total", f"{result.first_day} .. {result.last_day}", total.trips, total.completed,
                 total.mean_predicted_s, total.mae_s))
    _print_table(["source", "days", "trips", "completed", "mean_predicted_s", "mae_s"], rows)


def analyst_queries() -> dict[str, Path]:
    """The named analyst queries: the platform's (``sql/queries/<name>.sql``) and every workload's
    (``workloads/<workload>/queries/<name>.sql``, named ``<workload>.<name>``)."""
    from core.db import SQL_DIR
    from core.workload import folders, known

    out = {p.stem: p for p in sorted((SQL_DIR / "queries").glob("*.sql"))}
    for folder in folders():
        for workload in known([folder]):
            out |= {f"{workload}.{p.stem}": p for p in sorted((folder / workload / "queries").glob("*.sql"))}
    return out


@query_app.command("sql")
def query_sql(
    name: Annotated[str, typer.Argument(help="A query in sql/queries/, without .sql, or a workload's in "
                                             "workloads/<name>/queries/ as <workload>.<query> (an unknown one lists "
                                             "them).")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="k=v: a value for the query's :k (repeatable); the others take the query's default.")]
    = None,
) -> None:
    """Run a named analyst query as the read-only analyst account and print its rows."""
    import re

    from sqlalchemy import text

    from core.db import engine

    available = analyst_queries()
    if name not in available:
        typer.echo(f"no query named {name!r}; the queries are:")
        for known_name, path in available.items():
            about = next((ln.lstrip("- ").strip() for ln in path.read_text().splitlines() if ln.startswith("--")), "")
            typer.echo(f"  {known_name:34s} {about}")
        raise typer.Exit(code=1)
    sql = available[name].read_text()  # only a listed file: a name is never a path
    names = sorted(set(re.findall(r"(?<![:\w\\]):(\w+)(?!:)", sql)))  # the bound parameters, as SQLAlchemy finds them
    values: dict[str, str | None] = dict.fromkeys(names)
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or key not in values:
            _fail(f"--param {item!r}: expected k=v, k one of: {', '.join(names) or '(none)'}")
        values[key] = value
    eng = engine(get_settings(), analyst=True)
    try:
        with eng.connect() as conn:
            result = conn.execute(text(sql), values)
            columns, rows = list(result.keys()), [tuple(r) for r in result]
    finally:
        eng.dispose()
    _print_table(columns, rows)
    typer.echo(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


views_app = typer.Typer(help="The serving layer's views: rebuild them from master data.", no_args_is_help=True)
app.add_typer(views_app, name="views")


@views_app.command("rebuild")
def views_rebuild(
    first: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, by the requests' event time).")],
    last: Annotated[str | None, typer.Option("--to", help="Last day, included. Default: --from.")] = None,
    workload: Annotated[str, typer.Option(help="The workload whose views to rebuild (a folder under workloads/).")]
    = "taxi",
    hive: Annotated[bool, typer.Option("--hive/--no-hive", help="Recompute the Hive batch views.")] = True,
    mysql: Annotated[bool, typer.Option("--mysql/--no-mysql", help="Replace the MySQL real-time views' rows.")]
    = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="First wait until the lake sink has written "
                                       "every record Kafka holds to the master log.")] = True,
) -> None:
    """Rebuild a workload's views of a date range, Hive and MySQL, from the master log of events (after a hand edit,
    a sync bug or a lost partition). Needs the stack up; runs a Spark job."""

    from core.spark import build_session
    from core.workload import known
    from serving.rebuild import as_json, rebuild

    if workload not in known():
        _fail(f"--workload {workload!r}: no such workload; the workloads are {', '.join(known())}")
    day_from, day_to = _day_range(first, last)
    settings = get_settings()
    spark = build_session(settings, f"lambdaml-views-rebuild-{workload}")
    spark.sparkContext.setLogLevel("WARN")
    try:
        result = rebuild(spark, settings, day_from, day_to, workload=workload, hive=hive, mysql=mysql,
                         wait_for_master=wait)
    finally:
        spark.stop()
    for day in as_json(result):
        typer.echo(json.dumps(day))


@views_app.command("reconcile")
def views_reconcile(
    first: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC). Default: today.")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last day, included. Default: --from.")] = None,
    workload: Annotated[str, typer.Option(help="The workload whose events to reconcile.")] = "taxi",
    arrived_from: Annotated[str | None, typer.Option(help="First arrival day of the topics' counts (a replay of old "
                                                     "days arrives today). Default: --from.")] = None,
    arrived_to: Annotated[str | None, typer.Option(help="Last arrival day. Default: --arrived-from, else --to.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the tables.")] = False,
) -> None:
    """Count a workload's events at each stage, side by side: per topic and arrival day Kafka's offsets and the
    master log's rows; per event day the predictions in the master log, Hive and MySQL. Says where they differ and
    what to run. Exit code 1 when any count differs. Needs the stack up; runs a Spark job."""
    import datetime as dt

    from core.spark import build_session
    from core.workload import known
    from serving.reconcile import reconcile

    if workload not in known():
        _fail(f"--workload {workload!r}: no such workload; the workloads are {', '.join(known())}")
    day_from, day_to = _day_range(first or dt.datetime.now(dt.UTC).date().isoformat(), last)
    arrived = _day_range(arrived_from, arrived_to) if arrived_from else (day_from, day_to)
    settings = get_settings()
    spark = build_session(settings, f"lambdaml-reconcile-{workload}")
    spark.sparkContext.setLogLevel("WARN")
    try:
        result = reconcile(spark, settings, day_from, day_to, workload, arrived)
    finally:
        spark.stop()
    typer.echo(json.dumps(result.as_json(), indent=2) if as_json else result.text())
    if result.differs:
        raise typer.Exit(code=1)


def _day_range(first: str, last: str | None):
    """``--from`` and ``--to`` as dates; a clear error for a bad one or a range that ends before it starts."""
    import datetime as dt

    try:
        day_from = dt.date.fromisoformat(first)
        day_to = dt.date.fromisoformat(last) if last else day_from
    except ValueError as exc:
        _fail(f"--from/--to: {exc} (expected YYYY-MM-DD)")
    if day_to < day_from:
        _fail(f"--to {day_to} is before --from {day_from}")
    return day_from, day_to


@app.command("install")
def install(
    system: Annotated[bool, typer.Option(help="Install missing Debian packages with apt-get (MariaDB, a JRE and "
                                         "JDK 17, Maven, npm, haproxy, Chromium).")] = True,
    jar_sets: Annotated[bool, typer.Option("--jars/--no-jars", help="Resolve the jars from Maven Central, build the "
                                           "S3 server (Go from the Go module proxy if go 1.25+ is missing), compile "
                                           "the Thrift Server's classes, fetch uPlot from npm.")] = True,
) -> None:
    """Install what the local stack needs and this machine lacks: one line per step, tool output in
    <runtime>/logs/install-*.log."""
    from deploy.local import install as inst

    try:
        inst.install_all(get_settings(), system=system, jar_sets=jar_sets, echo=typer.echo)
    except inst.InstallError as exc:
        _fail(str(exc))


@app.command("migrate")
def migrate() -> None:
    """Apply the pending MySQL migrations in sql/mysql/ to the configured database."""
    from core import migrate as mig

    applied = mig.apply(get_settings())
    typer.echo(f"applied migrations: {applied}" if applied else "schema is up to date")


@app.command("generate")
def generate(
    days: Annotated[int, typer.Option(min=1, help="How many daily partitions.")] = 3,
    start: Annotated[str, typer.Option(help="First pickup date, YYYY-MM-DD. Default: DAYS days before today.")] = "",
    rows_per_day: Annotated[int, typer.Option(min=1, help="Trips per day.")] = 20000,
    seed: Annotated[int, typer.Option(help="Same seed, same trips.")] = 7,
    dirty_share: Annotated[float, typer.Option(min=0.0, max=0.49, help="Share of dirty rows.")] = 0.03,
    shift: Annotated[bool, typer.Option("--shift", help="Shifted traffic pattern (drift scenario).")] = False,
    lake_root: Annotated[str, typer.Option(help="Lake root (s3a://bucket or a local folder). "
                                                "Default: the configured bucket.")] = "",
    workload: Annotated[str, typer.Option(help="Whose data to generate: a folder of workloads/ (taxi, bike).")]
    = "taxi",
) -> None:
    """Write realistic raw data of a workload into its raw partitions (taxi: TLC trips into
    raw/trips/pickup_date=.../; bike: Citi Bike rides into raw/bike/start_date=.../)."""
    import datetime as dt

    from core.workload import UnknownWorkload, load, module

    try:
        wl, run = load(workload), module(workload, "generate").generate
    except UnknownWorkload as exc:
        raise typer.BadParameter(str(exc), param_hint="--workload") from None
    first = dt.date.fromisoformat(start) if start else dt.date.today() - dt.timedelta(days=days)
    typer.echo(f"generating {days} day(s) x {rows_per_day:,} {wl.name} rows from {first} into {wl.dataset} (seed "
               f"{seed}, {dirty_share:.0%} dirty{', shifted' if shift else ''})")
    run(get_settings(), first, days, rows_per_day, seed, dirty_share, shift, lake_root or None, typer.echo)


@app.command("ingest")
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or s3:// URIs: Parquet, CSV or CSV.gz "
                                                      "trip files in any known variant of the schema.")],
    workload: Annotated[str, typer.Option(help="Whose raw data this is (taxi).")] = "taxi",
    lake_root: Annotated[str, typer.Option(help="Lake root (s3a://bucket or a local folder). "
                                                "Default: the configured bucket.")] = "",
) -> None:
    """Load your own files into raw/<dataset>/<date>=.../ split by day; a file already ingested writes nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from batch.ingest import IndexUnavailable, IngestError, mysql_recorder
    from batch.ingest import ingest as run

    settings = get_settings()
    console = Console(stderr=True)
    record, close = mysql_recorder(settings)
    tasks: list = []
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[what]}"),
                      TimeElapsedColumn(), console=console) as bar:
            def on_start(found, skipped) -> None:
                for name in skipped:
                    console.print(f"skipped (not a .parquet/.csv/.csv.gz file): {name}")
                tasks.extend(bar.add_task(src.name, total=3, what="waiting") for src in found)

            def progress(index: int, done: int, total: int, what: str) -> None:
                bar.update(tasks[index], completed=done, total=total, what=what)

            results = run(settings, sources, workload, lake_root or None, progress, on_start, record)
    except (IngestError, IndexUnavailable) as exc:
        _fail(str(exc))
    finally:
        close()
    status = {"present": "yes", "repeated": "yes (repeated)", "refused": "refused"}
    _print_table(["file", "variant", "rows", "days", "outside month", "no pickup time", "already present", "seconds"],
                 [(r.name, r.variant or "-", r.rows, r.days, r.outside_month, r.no_event_time,
                   status.get(r.status, "no"), round(r.seconds, 1)) for r in results])
    written = [r for r in results if r.status == "ingested"]
    typer.echo(f"{len(written)} file(s) ingested ({sum(r.rows for r in written):,} rows), "
               f"{sum(r.already_present for r in results)} already present: nothing written for those")
    refused = [r for r in results if r.status == "refused"]
    for r in refused:
        typer.secho(f"refused: {r.error}", fg=typer.colors.RED, err=True)
    if refused:
        typer.secho(f"error: {len(refused)} file(s) refused; nothing of them was written", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(code=1)


@app.command("move-aside")
def move_aside(
    uris: Annotated[list[str], typer.Argument(help="Objects under <lake>/raw/ that validation cannot read.")],
    lake_root: Annotated[str, typer.Option(help="Lake root. Default: the configured bucket.")] = "",
) -> None:
    """Move raw objects that cannot be read to the same path under rejected/ (raw data is otherwise never touched)."""
    from batch.ingest import IngestError
    from batch.ingest import move_aside as run

    for uri in uris:
        try:
            typer.echo(f"moved {uri} -> {run(get_settings(), uri, lake_root or None)}")
        except IngestError as exc:
            _fail(str(exc))


@app.command("replay")
def replay(
    count: Annotated[int, typer.Option(min=1, help="Trips to replay: one valid request and one completion each.")]
    = 1000,
    rate: Annotated[float, typer.Option(min=0.001, help="Request messages per second, sent in pickup order.")]
    = 200.0,
    day: Annotated[str, typer.Option(help="Pickup date of the generated trips, YYYY-MM-DD. Default: today.")] = "",
    seed: Annotated[int, typer.Option(help="Same seed, same trips and trip ids.")] = 7,
    shift: Annotated[bool, typer.Option("--shift", help="Shifted traffic pattern (drift scenario).")] = False,
    time_scale: Annotated[float, typer.Option(
        min=0.001, help="Trip time runs this many times faster than real time: a completion follows its request "
                        "after duration / TIME_SCALE seconds (300: a 15-minute trip completes after 3 s).")] = 300.0,
    completions_immediately: Annotated[bool, typer.Option(
        "--completions-immediately", help="Send each completion right after its request (ignores --time-scale).")]
    = False,
    malformed_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Extra malformed request messages (not JSON, no key, a value out of range, "
                               "a wrong type, a bad timestamp), as a share of COUNT: for the dead-letter path. "
                               "Their keys start with 'malformed-'.")] = 0.0,
    workload: Annotated[str, typer.Option(
        help="Whose traffic to replay: a folder of workloads/ (taxi, bike); onto that workload's requests and "
             "completed topics.")] = "taxi",
) -> None:
    """Replay generated trips live: requests to the requests topic, completions to the completed topic."""
    import datetime as dt
    import math

    from batch.replay import ReplayError
    from batch.replay import replay as run
    from core.workload import UnknownWorkload

    settings = get_settings()
    pickup_day = dt.date.fromisoformat(day) if day else dt.date.today()
    scale = math.inf if completions_immediately else time_scale
    topics = settings.kafka.for_workload(workload)
    typer.echo(f"replaying {count:,} {workload} rows of {pickup_day} (seed {seed}{', shifted' if shift else ''}) at "
               f"{rate:g} requests/s to {topics.requests} and {topics.completed} on {settings.kafka.bootstrap}")
    try:
        summary = run(settings, pickup_day, count, rate, seed, shift, scale, malformed_share, typer.echo, workload)
    except UnknownWorkload as exc:
        raise typer.BadParameter(str(exc), param_hint="--workload") from None
    except ReplayError as exc:
        _fail(str(exc))
    typer.echo(f"sent {summary.requests:,} requests, {summary.malformed:,} malformed, "
               f"{summary.completions:,} completions in {summary.elapsed_s:.1f}s "
               f"({summary.achieved_rate:,.1f} requests/s)")


def _model_name(name: str) -> str:
    """``--name``, or the model the service serves for the default workload."""
    return name or get_settings().speed.model_name


@models_app.command("list")
def models_list(name: ModelName = "") -> None:
    """Every registered version, newest first, with stage and its test score by its task's gate metric."""
    from core.registry import Registry
    from core.workload import known, load

    name = _model_name(name)
    versions = Registry(get_settings()).list(name)
    if not versions:
        typer.echo(f"no versions of {name} registered yet")
        return
    gate = next((load(w).task.gate for w in known() if load(w).model_name == name), "mae_s")
    typer.echo(f"{'version':55s} {'stage':11s} {'test ' + gate:>10s}  created")
    digits = 1 if gate == "mae_s" else 3  # seconds; a log loss
    for v in versions:
        score = v.metrics.get("test", {}).get("model", {}).get(gate)
        text = f"{score:10.{digits}f}" if isinstance(score, int | float) else f"{'-':>10s}"
        typer.echo(f"{v.version:55s} {v.stage:11s} {text}  {v.created_at}")


@models_app.command("show")
def models_show(version: str, name: ModelName = "") -> None:
    """Everything recorded about one version (what rebuilds it, and its metrics)."""
    from core.registry import Registry

    try:
        v = Registry(get_settings()).get(_model_name(name), version)
    except KeyError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({**v.__dict__, "created_at": str(v.created_at), "promoted_at": str(v.promoted_at)},
                          indent=2, default=str))


@models_app.command("promote")
def models_promote(version: str, name: ModelName = "") -> None:
    """Make VERSION the production model and announce it on the models topic."""
    from core.registry import AnnouncementError, Registry

    try:
        v = Registry(get_settings()).promote(_model_name(name), version)
    except (KeyError, AnnouncementError) as exc:
        _fail(str(exc))
    typer.echo(f"{v.version} is now in production")


@models_app.command("rollback")
def models_rollback(name: ModelName = "") -> None:
    """Put the previous production version back into production."""
    from core.registry import AnnouncementError, Registry

    try:
        v = Registry(get_settings()).rollback(_model_name(name))
    except (KeyError, AnnouncementError) as exc:
        _fail(str(exc))
    typer.echo(f"rolled back: {v.version} is now in production")


@models_app.command("announce-pending")
def models_announce_pending() -> None:
    """Publish the announcements that promotions and rollbacks left pending in the outbox (Kafka was down)."""
    from core.registry import AnnouncementError, Registry

    settings = get_settings()
    try:
        sent = Registry(settings).publish_pending()
    except AnnouncementError as exc:
        _fail(str(exc))
    typer.echo(f"announced {sent} pending version(s) on {settings.kafka.models_topic}")


SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "credential")


def _secret_name(name: str) -> bool:
    name = name.lower()
    return any(word in name for word in SECRET_WORDS) or name.endswith((".key", "_key", "__url"))


def shown_settings(settings) -> dict:
    """The settings as JSON data with every secret masked: SecretStr fields, the password of
    ``mysql.url`` and the values of secret-looking ``spark.extra_conf`` keys."""
    from sqlalchemy.engine import make_url

    data = json.loads(settings.model_dump_json())  # SecretStr fields dump as "**********"
    if settings.mysql.url:
        data["mysql"]["url"] = make_url(settings.mysql.url).render_as_string(hide_password=True)
    data["spark"]["extra_conf"] = {k: "**********" if _secret_name(k) else v
                                  for k, v in settings.spark.extra_conf.items()}
    return data


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON (secrets masked)."""
    typer.echo(json.dumps(shown_settings(get_settings()), indent=2))


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ValidationError as exc:
        from core.settings import ENV_PREFIX

        for err in exc.errors():
            var = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"])
            value = err.get("input")
            # A section's input holds its secrets; a secret's value is never echoed.
            got = "" if isinstance(value, dict | list) or _secret_name(var) else f" (got {value!r})"
            typer.secho(f"error: invalid setting {var}: {err['msg']}{got}",
                        fg=typer.colors.RED, err=True)
        sys.exit(2)
    except ValueError as exc:  # e.g. a missing LAMBDAML_CONFIG_FILE
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
