"""Run every registered benchmark, each beside its baseline, and write one dated result and table.

Each benchmark of ``bench.registry.BENCHMARKS`` runs as its own process (``python -m bench.<name>
--out <folder>``), one after another so that they never share the CPU with each other; its output
is shown as it goes, prefixed with its name. The runner collects the JSON each one writes into
``<out>/<YYYY-MM-DD>-<machine>.json`` (the machine: architecture, cores, memory, e.g.
``x86_64-2cpu-24g``; the full description, git sha and the load average before and after are
inside) and writes the summary table ``<out>/<YYYY-MM-DD>-<machine>.md``, which it also prints.
A benchmark that fails (or outlives its timeout) is listed as failed and the others still run;
the exit code is then 1.

In the table, ratio = measured / baseline; "better" says which direction of the ratio is the
good one. The machine is shared: compare ratios taken in one run, not absolute figures across runs.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import common
from bench.registry import BENCHMARKS, OPT_IN, Benchmark

INTERRUPT_GRACE_S = 90.0  # after SIGINT, time for a benchmark to remove its processes, topics and files
ERROR_LINES = 20
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)?(Error|Exception|Exit|Interrupt)\b.*:")


# ------------------------------------------------------------------------------------------------ pure logic

def machine_tag(host: dict[str, Any]) -> str:
    """A short, stable, hostname-free name of the machine: ``x86_64-2cpu-24g``."""
    memory = f"-{round(host['memory_gib'])}g" if host.get("memory_gib") else ""
    gpu = "-gpu" if host.get("gpu") else ""
    return f"{host.get('arch') or 'unknown'}-{host.get('cpu_count')}cpu{memory}{gpu}"


def result_stem(date: dt.date, tag: str, smoke: bool, only: list[str] | None) -> str:
    """The dated file name; smoke and partial runs get their own names, so they never replace a full run."""
    stem = f"{date.isoformat()}-{tag}"
    if smoke:
        stem += "-smoke"
    if only:
        stem += "-" + "+".join(only)
    return stem


def select(benchmarks: tuple[Benchmark, ...], only: list[str] | None,
           opt_in: tuple[Benchmark, ...] = ()) -> list[Benchmark]:
    """The registered benchmarks named in ``only`` (all of ``benchmarks`` when empty), in registry order;
    those of ``opt_in`` only when named."""
    if not only:
        return list(benchmarks)
    every = (*benchmarks, *opt_in)
    names = [b.name for b in every]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise typer.BadParameter(f"unknown benchmark(s) {', '.join(unknown)}; registered: {', '.join(names)}")
    return [b for b in every if b.name in only]


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if size < 1 else f"{value:.2f}"


def _figure(label: str, value: float | None, unit: str) -> str:
    return f"{label}: {_number(value)} {unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def failure_reason(lines: list[str]) -> str:
    """The exception a benchmark died of, from the last lines it printed (wrapped lines joined)."""
    starts = [i for i, line in enumerate(lines) if EXCEPTION_LINE.match(line.strip())]
    return " ".join(line.strip() for line in lines[starts[-1]:]) if starts else lines[-1].strip()


def summary_rows(entry: dict[str, Any]) -> list[list[str]]:
    """The table rows of one benchmark: a row per comparison, or one row saying it failed."""
    name = entry["name"]
    if entry["status"] != "ok":
        reason = failure_reason(entry.get("error") or ["no output"])
        return [[name, _cell(f"**failed** ({entry['status']}, {entry['elapsed_s']:.0f} s): {reason}"),
                 "", "", "", "", ""]]
    lines = entry["result"].get("summary") or []
    if not lines:
        ratios = ", ".join(f"{k} {_number(v)}" for k, v in entry["result"].get("ratios", {}).items())
        return [[name, _cell(f"ran; no summary lines (ratios: {ratios or 'none'})"), "", "", "", "", ""]]
    rows = []
    for line in lines:
        met = "–" if line["met"] is None else ("yes" if line["met"] else "**no**")
        rows.append([name, _cell(_figure(line["measured"], line["measured_value"], line["unit"])),
                     _cell(_figure(line["baseline"], line["baseline_value"], line["unit"])),
                     _number(line["ratio"]), "higher" if line["higher_is_better"] else "lower",
                     _cell(line["target"] or "reported"), met])
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    """The summary table of a runner report, with where and when it was measured."""
    host = report["machine"]
    load_before, load_after = report["load_average_before"], report["load_average_after"]
    head = [
        f"# Benchmarks {report['date']}, {report['machine_tag']}"
        + (" (smoke: tiny sizes, no timing meaning)" if report["smoke"] else ""),
        "",
        f"- machine: {host.get('cpu_model')}, {host.get('cpu_count')} cores, {host.get('memory_gib')} GiB, "
        f"GPU: {host.get('gpu') or 'none'}; {host.get('platform')}",
        f"- git: {report['git_sha']}{' (with uncommitted changes)' if report['git_dirty'] else ''}",
        f"- run: {report['started_utc']} to {report['finished_utc']} UTC ({report['elapsed_s'] / 60:.1f} min); "
        f"load average (1/5/15 min) before {' / '.join(map(str, load_before))}, "
        f"after {' / '.join(map(str, load_after))}",
        "- ratio = measured / baseline; *better* is the direction of the ratio that is good; the machine is "
        "shared, so compare ratios from one run rather than absolute figures across runs",
        "",
        "| benchmark | measured | baseline | ratio | better | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [f"| {' | '.join(row)} |" for entry in report["benchmarks"] for row in summary_rows(entry)]
    failed = [e["name"] for e in report["benchmarks"] if e["status"] != "ok"]
    tail = ["", f"Failed: {', '.join(failed)} (see the JSON for the last lines of output)." if failed
            else f"All {len(report['benchmarks'])} benchmarks ran."]
    return "\n".join(head + rows + tail) + "\n"


# ------------------------------------------------------------------------------------------------------- I/O

def describe_machine() -> dict[str, Any]:
    host = common.machine()
    host.pop("load_average_1_5_15m", None)
    return {**host, "arch": platform.machine()}


def git_dirty() -> bool:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                         capture_output=True, text=True)
    return bool(out.stdout.strip())


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(bench: Benchmark, smoke: bool, parts: Path, echo: Any = typer.echo) -> dict[str, Any]:
    """Run one benchmark in its own process group; its entry for the report."""
    out = parts / bench.name
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-u", "-m", bench.module, *(bench.smoke if smoke else bench.args), "--out", str(out)]
    entry: dict[str, Any] = {"name": bench.name, "command": ["python", *command[2:-2]],
                             "load_average_before": load_average()}
    last: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, cwd=common.RESULTS_DIR.parent.parent)
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        _stop(proc)

    watchdog = threading.Timer(bench.timeout_s, interrupt)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            last.append(line)
            echo(f"  [{bench.name}] {line}")
        returncode = proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        watchdog.cancel()
    entry["elapsed_s"] = round(time.monotonic() - started, 1)
    entry["load_average_after"] = load_average()
    entry["returncode"] = returncode
    written = sorted(out.glob("*.json"))
    if timed_out.is_set():
        entry["status"] = f"timed out after {bench.timeout_s:.0f} s"
    elif returncode != 0:
        entry["status"] = f"exit {returncode}"
    elif len(written) != 1:
        entry["status"] = f"wrote {len(written)} JSON files, expected 1"
    else:
        entry["status"] = "ok"
        entry["result"] = json.loads(written[0].read_text())
    if entry["status"] != "ok":
        entry["error"] = [line for line in last if line.strip()] or ["no output"]
    return entry


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the benchmark's process group (it cleans up as on Ctrl-C), SIGKILL if it outlives the grace."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(
    only: Annotated[list[str] | None, typer.Option(
        help="Run only this benchmark (repeatable, or comma-separated); see --list. Opt-in ones (batch_scale) "
             "run only when named here.")] = None,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="Tiny sizes: every benchmark only proves it runs end to end; the numbers mean nothing.")]
    = False,
    out: Annotated[Path, typer.Option(help="Folder of the dated JSON and markdown results.")] = common.RESULTS_DIR,
    list_: Annotated[bool, typer.Option("--list", help="List the registered benchmarks and their options, then exit.")]
    = False,
) -> None:
    """Run the benchmarks one after another; write <out>/<date>-<machine>.json and .md; print the table."""
    if list_:
        for b in (*BENCHMARKS, *OPT_IN):
            typer.echo(f"{b.name:20s} python -m {b.module} {' '.join(b.args)}"
                       + (f"  (opt-in: --only {b.name})" if b in OPT_IN else ""))
            typer.echo(f"{'':20s} --smoke: {' '.join(repr(a) if not a else a for a in b.smoke)}")
        return
    names = [n.strip() for item in only or [] for n in item.split(",") if n.strip()]
    chosen = select(BENCHMARKS, names, OPT_IN)
    host = describe_machine()
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    report: dict[str, Any] = {
        "date": started.date().isoformat(), "machine_tag": machine_tag(host), "machine": host,
        "git_sha": common.git_sha(), "git_dirty": git_dirty(), "smoke": smoke, "command": sys.argv[1:],
        "started_utc": started.isoformat(timespec="seconds"), "load_average_before": load_average(),
        "benchmarks": [],
    }
    typer.echo(f"{len(chosen)} benchmark(s){' (smoke)' if smoke else ''} on {report['machine_tag']}, "
               f"load average {report['load_average_before']}: {', '.join(b.name for b in chosen)}")
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="lambdaml-bench-") as parts:
        for i, bench in enumerate(chosen, 1):
            typer.echo(f"\n[{i}/{len(chosen)}] {bench.name} ({time.monotonic() - t0:.0f} s elapsed)")
            try:
                entry = run_one(bench, smoke, Path(parts))
            except KeyboardInterrupt:
                entry = {"name": bench.name, "status": "interrupted", "elapsed_s": 0.0, "error": ["Ctrl-C"]}
                interrupted = True
            report["benchmarks"].append(entry)
            typer.echo(f"[{i}/{len(chosen)}] {bench.name}: {entry['status']} in {entry['elapsed_s']:.0f} s")
            if interrupted:
                break
    finished = dt.datetime.now(dt.UTC)
    report.update(finished_utc=finished.isoformat(timespec="seconds"), elapsed_s=round(time.monotonic() - t0, 1),
                  load_average_after=load_average())
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(started.date(), report["machine_tag"], smoke, names)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = render_markdown(report)
    (out / f"{stem}.md").write_text(table)
    typer.echo(f"\n{table}\nwritten: {out / f'{stem}.json'}, {out / f'{stem}.md'}")
    failed = [e["name"] for e in report["benchmarks"] if e["status"] != "ok"]
    if interrupted:
        raise typer.Exit(130)
    if failed:
        typer.echo(f"failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
