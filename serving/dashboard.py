"""The monitoring dashboard: one page of live charts over the serving layer's MySQL tables.

A Flask app factory with one blueprint, ``dashboard``:

- ``GET /``: the page (``serving/templates/dashboard.html``). It fetches every panel again every
  ``REFRESH_S`` seconds and draws it with uPlot; a panel without rows shows why instead of a chart.
  ``?model=<name>`` (default: the served model, ``speed.model_name``) and ``?minutes=<n>`` (default
  ``DEFAULT_MINUTES``) choose what it shows.
- ``GET /api/<panel>.json``: the data of one panel of ``PANELS``, shaped for uPlot (same parameters).
- ``GET /assets/<file>``: uPlot's script and stylesheet, from the cache that ``lambdaml install`` fills.
- ``GET /healthz``: the process is up.

Panels read MySQL as the read-only analyst account, with the SQL in ``sql/dashboard/``. MySQL holds
naive UTC; the charts get Unix seconds and draw them in UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, render_template, request, send_from_directory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from core.db import load_sql
from core.settings import Settings, get_settings
from serving.monitor import LIVE_MAE_ROW

log = logging.getLogger("lambdaml.serving.dashboard")

UPLOT_VERSION = "1.6.32"
UPLOT_INTEGRITY = "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
UPLOT_FILES = {  # served name -> its path in the npm tarball
    "uPlot.iife.min.js": "package/dist/uPlot.iife.min.js",
    "uPlot.min.css": "package/dist/uPlot.min.css",
    "LICENSE": "package/LICENSE",
}
REFRESH_S = 10
DEFAULT_MINUTES = 180
MAX_MINUTES = 7 * 24 * 60
TIMELINE_VERSIONS = 30

Panel = dict[str, Any]
Row = Sequence[Any]


# ----------------------------------------------------------------------------------------------- assets
class AssetsMissing(RuntimeError):
    """uPlot is not in the cache."""


def asset_dir(settings: Settings) -> Path:
    """Where ``lambdaml install`` puts uPlot's files: ``<cache_dir>/npm/uplot-<version>/``."""
    return settings.cache_dir / "npm" / f"uplot-{UPLOT_VERSION}"


def require_assets(settings: Settings) -> Path:
    """The asset folder; raises ``AssetsMissing``, saying what to run, if a file is not there."""
    folder = asset_dir(settings)
    missing = [name for name in UPLOT_FILES if not (folder / name).is_file()]
    if missing:
        raise AssetsMissing(f"uPlot {UPLOT_VERSION} is not in {folder} (missing {', '.join(missing)}): "
                            "run `lambdaml install` (it fetches it once with `npm pack` into the cache).")
    return folder


# ----------------------------------------------------------------------------------------------- pure
def version_pattern(model: str) -> str:
    """LIKE pattern of every version of ``model`` (versions read ``<name>:<version>``), wildcards escaped."""
    return re.sub(r"([\\%_])", r"\\\1", model) + ":%"


def short_version(version: str) -> str:
    """``<model>:1.4.0-20261123T1015-abc`` -> ``1.4.0-20261123T1015-abc``."""
    return version.split(":", 1)[1] if ":" in version else version


def unix(ts: dt.datetime) -> float:
    """A naive UTC timestamp as Unix seconds (to the millisecond)."""
    return round(ts.replace(tzinfo=dt.UTC).timestamp(), 3)


def minutes_arg(value: int | None) -> int:
    """The ``minutes`` parameter, defaulted and held between 5 minutes and a week."""
    return DEFAULT_MINUTES if value is None else min(max(value, 5), MAX_MINUTES)


def align(columns: dict[str, dict[float, float]]) -> tuple[list[float], list[dict[str, Any]]]:
    """Series keyed by x in uPlot's aligned form: one sorted x axis, and each series' values on it (None: no value)."""
    xs = sorted({x for column in columns.values() for x in column})
    return xs, [{"label": label, "values": [column.get(x) for x in xs]} for label, column in columns.items()]


def count_points(series: Iterable[dict[str, Any]]) -> int:
    return sum(v is not None for s in series for v in s["values"])


def per_minute(rows: Iterable[Row], label: Callable[[Row], str]) -> dict[str, dict[float, float]]:
    """Rows of (key, minute since the epoch, value) as one column per ``label(row)``, keyed by Unix seconds."""
    columns: dict[str, dict[float, float]] = {}
    for row in rows:
        columns.setdefault(label(row), {})[row[1] * 60] = float(row[2])
    return columns


def time_panel(columns: dict[str, dict[float, float]], unit: str, empty: str) -> Panel:
    x, series = align(columns)
    return {"kind": "time", "unit": unit, "x": x, "series": series, "points": count_points(series), "empty": empty}


def mae_panel(rows: Iterable[Row], model: str, minutes: int) -> Panel:
    """Rows of (model_version, minute, mae_s): one line per version."""
    return time_panel(per_minute(rows, lambda r: short_version(r[0])), "seconds",
                      f"No completed trips of {model} scored in the last {minutes} min: live MAE needs the "
                      "outcomes (trips.completed) that serving_sync writes to trip_outcomes.")


def throughput_panel(rows: Iterable[Row], model: str, minutes: int) -> Panel:
    """Rows of (model_version, minute, predictions): one line per version."""
    return time_panel(per_minute(rows, lambda r: short_version(r[0])), "predictions / min",
                      f"No predictions of {model} in the last {minutes} min.")


def latency_panel(request_rows: Iterable[Row], stream_rows: Iterable[Row], model: str, minutes: int) -> Panel:
    """Rows of (minute, p50, p95, p99) of event-to-prediction latency, and of (minute, p50) of the stream's batches."""
    columns: dict[str, dict[float, float]] = {"event→scored p50": {}, "event→scored p95": {}, "event→scored p99": {}}
    for minute, *percentiles in request_rows:
        for column, value in zip(columns.values(), percentiles, strict=True):
            column[minute * 60] = float(value)
    columns["stream batch p50"] = {minute * 60: float(value) for minute, value in stream_rows}
    return time_panel(columns, "milliseconds",
                      f"No scored requests of {model} and no stream metrics in the last {minutes} min.")


def drift_panel(rows: Iterable[Row], model: str, threshold: float) -> Panel:
    """Rows of (feature, model_version, window_end, psi, live_mae_s, test_mae_s), the latest of each feature:
    one bar per feature, and a note on the latest live-MAE row."""
    features: list[Row] = []
    note = ""
    for row in rows:
        if row[0] != LIVE_MAE_ROW:
            features.append(row)
            continue
        _, version, window_end, _, live, test = row
        live_text = "no completed trips" if live is None else f"live MAE {live:.0f} s"
        test_text = "" if test is None else f" vs test MAE {test:.0f} s"
        note = f"{live_text}{test_text} ({short_version(version)}, window to {window_end:%Y-%m-%d %H:%M} UTC)"
    psi = [float(r[3]) for r in features]
    series = [{"label": "PSI", "values": psi}]
    return {"kind": "bars", "unit": "PSI", "x": list(range(len(features))), "series": series,
            "categories": [r[0] for r in features], "over": [v >= threshold for v in psi],
            "threshold": threshold, "note": note, "points": count_points(series),
            "empty": f"No drift report for {model} yet: the monitoring DAG writes one per live window."}


def models_panel(rows: Iterable[Row], model: str) -> Panel:
    """Rows of (version, stage, created_at, promoted_at), newest first: one lane per version (oldest at the bottom),
    a point where it was created and one where it was promoted, and the same as a table."""
    newest_first = list(rows)
    lanes = [short_version(r[0]) for r in reversed(newest_first)]
    events: dict[str, dict[float, float]] = {"created": {}, "promoted": {}}
    for lane, (_, _, created, promoted) in enumerate(reversed(newest_first)):
        for label, ts in (("created", created), ("promoted", promoted)):
            if ts is None:
                continue
            x = unix(ts)
            while x in events[label]:  # one value per x and series: nudge a tie by a millisecond
                x = round(x + 0.001, 3)
            events[label][x] = lane
    x, series = align(events)
    table = [{"version": short_version(v), "stage": stage, "created_at": f"{created:%Y-%m-%d %H:%M:%S}",
              "promoted_at": None if promoted is None else f"{promoted:%Y-%m-%d %H:%M:%S}"}
             for v, stage, created, promoted in newest_first]
    return {"kind": "timeline", "unit": "", "x": x, "series": series, "lanes": lanes, "table": table,
            "points": count_points(series), "empty": f"No version of {model} in the registry yet."}


# ----------------------------------------------------------------------------------------------- I/O
@dataclass(frozen=True)
class View:
    """What the page shows: one model's versions over the last ``minutes``."""

    model: str
    minutes: int
    now: dt.datetime  # naive UTC

    @property
    def since(self) -> dt.datetime:
        return self.now - dt.timedelta(minutes=self.minutes)

    @property
    def versions(self) -> str:
        return version_pattern(self.model)


class Reader:
    """Runs the dashboard's SQL as the read-only analyst account, on a small pool shared by the request threads."""

    def __init__(self, settings: Settings, pool_size: int = 2):
        self.engine = create_engine(
            settings.mysql.sqlalchemy_url(analyst=True),
            pool_size=pool_size,
            max_overflow=2,
            pool_pre_ping=True,
            pool_recycle=1800,
            # TIMESTAMP columns (model_versions) come back in the session's zone: make it UTC like the rest.
            connect_args={"connect_timeout": 5, "init_command": "SET time_zone = '+00:00'"},
        )

    def rows(self, name: str, **params: Any) -> list[Row]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(load_sql(f"dashboard/{name}")), params)]


@dataclass(frozen=True)
class PanelSpec:
    title: str
    subtitle: str
    build: Callable[[Reader, View, Settings], Panel]
    wide: bool = False


PANELS: dict[str, PanelSpec] = {
    "mae": PanelSpec(
        "Live MAE", "mean |predicted − actual| duration per minute of scoring, per model version",
        lambda r, v, s: mae_panel(r.rows("mae", since=v.since, versions=v.versions), v.model, v.minutes)),
    "latency": PanelSpec(
        "Latency", "event → prediction per minute (nearest-rank percentiles), and the stream's batch median",
        lambda r, v, s: latency_panel(r.rows("latency_requests", since=v.since, versions=v.versions),
                                      r.rows("latency_stream", since=v.since), v.model, v.minutes)),
    "throughput": PanelSpec(
        "Throughput", "predictions per minute, per model version",
        lambda r, v, s: throughput_panel(r.rows("throughput", since=v.since, versions=v.versions), v.model,
                                         v.minutes)),
    "drift": PanelSpec(
        "Drift", "latest PSI per feature against the training data; dashed: the threshold",
        lambda r, v, s: drift_panel(r.rows("drift", versions=v.versions), v.model, s.monitoring.psi_threshold)),
    "models": PanelSpec(
        "Model timeline", "versions created and promoted to production; their stage now",
        lambda r, v, s: models_panel(r.rows("models", model=v.model, limit=TIMELINE_VERSIONS), v.model),
        wide=True),
}


@dataclass(frozen=True)
class DashboardState:
    settings: Settings
    reader: Reader
    assets: Path


bp = Blueprint("dashboard", __name__, template_folder="templates")


def _state() -> DashboardState:
    return current_app.extensions["lambdaml.dashboard"]


def _view(settings: Settings) -> View:
    return View(model=request.args.get("model") or settings.speed.model_name,
                minutes=minutes_arg(request.args.get("minutes", type=int)),
                now=dt.datetime.now(dt.UTC).replace(tzinfo=None))


@bp.get("/")
def index() -> str:
    view = _view(_state().settings)
    return render_template("dashboard.html", view=view, panels=PANELS, refresh_s=REFRESH_S)


@bp.get("/api/<name>.json")
def panel(name: str) -> Response | tuple[Response, int]:
    spec = PANELS.get(name)
    if spec is None:
        return jsonify(error=f"no panel {name!r}; panels: {', '.join(PANELS)}"), 404
    state = _state()
    view = _view(state.settings)
    try:
        data = spec.build(state.reader, view, state.settings)
    except SQLAlchemyError as exc:  # one panel fails, the page goes on
        log.exception("panel %s failed", name)
        return jsonify(error=f"database: {(str(exc).splitlines() or [type(exc).__name__])[0]}"), 503
    return jsonify({"panel": name, "model": view.model, "minutes": view.minutes} | data)


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    if name not in UPLOT_FILES:
        abort(404)
    return send_from_directory(_state().assets, name, max_age=86400)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


def create_app(settings: Settings | None = None) -> Flask:
    """The dashboard app. Raises ``AssetsMissing`` if ``lambdaml install`` has not fetched uPlot."""
    settings = settings or get_settings()
    assets = require_assets(settings)
    app = Flask("lambdaml.dashboard")
    app.extensions["lambdaml.dashboard"] = DashboardState(settings, Reader(settings), assets)
    app.register_blueprint(bp)
    return app
