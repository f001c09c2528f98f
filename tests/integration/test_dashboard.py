"""The dashboard on the real stack: gunicorn serving ``serving.dashboard``, read back in headless Chromium.

Rows of a private model name go into the serving tables; the page of that model must draw every panel
with exactly those rows, and the page of a model without rows must show the empty state of its panels.
The dashboard runs as the ``Dashboard`` service under a private runtime folder and port, so a developer's
own (``lambdaml speed up``) keeps running. The screenshot of the filled page goes to ``.runtime/screenshots/dashboard.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import text

from core.db import engine, load_sql
from deploy.local.dashboard import Dashboard
from deploy.local.speed import SPEED_SERVICES
from deploy.local.stack import Stack
from serving.monitor import LIVE_MAE_ROW

pytestmark = pytest.mark.integration
MINUTES = 12  # minutes with predictions: the older half scored by v1, the newer half by v2
PER_MINUTE = 5
ABS_ERROR = {"v1": 120.0, "v2": 60.0}
LATENCY_MS = [100 + 10 * i for i in range(PER_MINUTE)]  # per minute: p50 120, p95 and p99 140 (nearest rank)
STREAM_P50_MS = 150.0
PSI = {"log_distance": 0.05, "passengers": 0.12, "pu_zone": 0.31}


@dataclass(frozen=True)
class Seeded:
    model: str
    versions: dict[str, str]


@pytest.fixture
def seeded(stack, settings, unique) -> Iterator[Seeded]:
    model = f"it_dash_{unique}"
    versions = {"v1": f"{model}:1.0.0-{unique}", "v2": f"{model}:1.1.0-{unique}"}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    start_of_minute = now.replace(second=0)
    predictions, outcomes, metrics = [], [], []
    for m in range(1, MINUTES + 1):
        minute = start_of_minute - dt.timedelta(minutes=m)
        label = "v1" if m > MINUTES // 2 else "v2"
        for i in range(PER_MINUTE):
            scored = minute + dt.timedelta(seconds=5 + 7 * i)
            trip_id = f"itdash-{unique}-{m}-{i}"
            pickup = scored - dt.timedelta(seconds=1)
            predictions.append({"trip_id": trip_id, "v": versions[label], "scored": scored, "pickup": pickup,
                                "event": scored - dt.timedelta(milliseconds=LATENCY_MS[i])})
            duration = 600.0 + ABS_ERROR[label]
            outcomes.append({"trip_id": trip_id, "dropoff": pickup + dt.timedelta(seconds=duration), "d": duration})
        metrics.append({"ts": minute + dt.timedelta(seconds=30, milliseconds=7), "value": STREAM_P50_MS,
                        "tags": json.dumps({"test": unique})})
    drift = [{"model_version": versions["v2"], "window_start": now - dt.timedelta(minutes=60),
              "window_end": now - dt.timedelta(minutes=1), "feature": feature, "psi": psi, "live_mae_s": 60.0,
              "test_mae_s": 55.0, "breached": True} for feature, psi in [*PSI.items(), (LIVE_MAE_ROW, 0.0)]]
    eng = engine(settings)

    def clean() -> None:
        with eng.begin() as conn:
            for table in ("trip_outcomes", "predictions_recent"):
                conn.execute(text(f"DELETE FROM {table} WHERE trip_id LIKE :p"), {"p": f"itdash-{unique}-%"})
            # Inserted, not upserted: these keys are this test's own.
            conn.execute(text("DELETE FROM serving_metrics WHERE source = 'speed.stream' "
                              "AND name = 'stream.latency_ms_p50' AND ts = :ts"), metrics)
            conn.execute(text("DELETE FROM drift_reports WHERE model_version = :v"),
                         [{"v": v} for v in versions.values()])
            conn.execute(text("DELETE FROM model_versions WHERE name = :n"), {"n": model})

    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO model_versions (name, version, stage, artifact_uri, sha256, metrics_json, params_json, "
            "data_partitions, feature_spec, code_version, created_at, promoted_at) "
            "VALUES (:n, :v, :stage, 's3a://lake/tests/none', REPEAT('0', 64), '{}', '{}', '[]', 'test', 'test', "
            ":created, :promoted)"),
            [{"n": model, "v": versions["v1"], "stage": "archived", "created": now - dt.timedelta(minutes=40),
              "promoted": now - dt.timedelta(minutes=39)},
             {"n": model, "v": versions["v2"], "stage": "production", "created": now - dt.timedelta(minutes=20),
              "promoted": now - dt.timedelta(minutes=19)}])
        conn.execute(text(
            "INSERT INTO predictions_recent (trip_id, model_version, pu_location_id, do_location_id, passenger_count, "
            "trip_distance, pickup_ts, predicted_duration_s, scored_ts, event_ts) "
            "VALUES (:trip_id, :v, 161, 237, 1, 2.5, :pickup, 600.0, :scored, :event)"), predictions)
        conn.execute(text("INSERT INTO trip_outcomes (trip_id, dropoff_ts, duration_s) "
                          "VALUES (:trip_id, :dropoff, :d)"), outcomes)
        conn.execute(text("INSERT INTO serving_metrics (source, name, ts, value, tags_json) "
                          "VALUES ('speed.stream', 'stream.latency_ms_p50', :ts, :value, :tags)"), metrics)
        conn.execute(text(load_sql("serving/upsert_drift_report")), drift)
    try:
        yield Seeded(model, versions)
    finally:
        clean()
        eng.dispose()


@pytest.fixture
def dashboard(stack, settings, tmp_path) -> Iterator[Dashboard]:
    """The ``Dashboard`` service on a free port, with its pid file and log under a private runtime folder."""
    with socket.socket() as probe:
        probe.bind((settings.bind_host, 0))
        port = probe.getsockname()[1]
    private = settings.model_copy(update={
        "runtime_dir": tmp_path / "runtime",
        "monitoring": settings.monitoring.model_copy(update={"dashboard_port": port}),
    })
    services = Stack(private, ["dashboard"], catalog=SPEED_SERVICES, with_dependencies=False)
    services.up()
    try:
        yield Dashboard(private)
    finally:
        services.down()


def chromium(*args: str, profile: Path) -> str:
    """Headless Chromium on the page(s) in ``args``, given 8 s of virtual time to fetch and draw; its stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: run `lambdaml install` (it installs the Debian package chromium)")
    cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=8000", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass
class RenderedPanel:
    state: str
    points: int
    canvases: int = 0
    text: str = ""


class PanelParser(HTMLParser):
    """The panels of the dumped DOM: their data-state, data-points, canvases and text."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, RenderedPanel] = {}
        self._current: RenderedPanel | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("data-panel"):
            self._current = self.panels[a["data-panel"]] = RenderedPanel(a.get("data-state") or "",
                                                                         int(a.get("data-points") or 0))
        elif tag == "canvas" and self._current is not None:
            self._current.canvases += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.text += data


def render(url: str, profile: Path) -> dict[str, RenderedPanel]:
    parser = PanelParser()
    parser.feed(chromium("--dump-dom", url, profile=profile))
    assert set(parser.panels) == {"mae", "latency", "throughput", "drift", "models"}, parser.panels
    return parser.panels


def test_panels_draw_the_rows_and_show_empty_states(seeded: Seeded, dashboard: Dashboard, settings, tmp_path: Path):
    page = f"{dashboard.url}/?{urlencode({'model': seeded.model, 'minutes': 60})}"

    # The API, as the page reads it: the rows shaped per minute, exactly.
    api = {name: requests.get(f"{dashboard.url}/api/{name}.json", params={"model": seeded.model, "minutes": 60},
                              timeout=10).json() for name in ("mae", "latency", "throughput", "drift", "models")}
    mae = {s["label"]: [v for v in s["values"] if v is not None] for s in api["mae"]["series"]}
    assert mae == {v.split(":", 1)[1]: [ABS_ERROR[k]] * (MINUTES // 2) for k, v in seeded.versions.items()}
    latency = {s["label"]: [v for v in s["values"] if v is not None] for s in api["latency"]["series"]}
    assert latency["event→scored p50"] == [120.0] * MINUTES
    assert latency["event→scored p95"] == latency["event→scored p99"] == [140.0] * MINUTES
    assert len(latency["stream batch p50"]) >= MINUTES  # the stream's own metrics may share the window
    assert [sum(v for v in s["values"] if v) for s in api["throughput"]["series"]] == [PER_MINUTE * MINUTES // 2] * 2
    assert dict(zip(api["drift"]["categories"], api["drift"]["series"][0]["values"], strict=True)) == PSI
    assert api["drift"]["over"] == [v >= 0.2 for v in PSI.values()] and "live MAE 60 s" in api["drift"]["note"]
    assert [(r["version"], r["stage"]) for r in api["models"]["table"]] == [
        (seeded.versions["v2"].split(":", 1)[1], "production"), (seeded.versions["v1"].split(":", 1)[1], "archived")]

    # The page, drawn by uPlot in Chromium: every panel ready, with as many points as it has rows.
    panels = render(page, tmp_path / "profile")
    expected = {"mae": MINUTES, "latency": 3 * MINUTES + MINUTES, "throughput": MINUTES, "drift": len(PSI),
                "models": 4}
    for name, panel in panels.items():
        assert panel.state == "ready", f"{name}: {panel}"
        assert panel.canvases >= 1, f"{name}: no uPlot canvas"
        if name == "latency":
            assert panel.points >= expected[name], f"{name}: {panel}"
        else:
            assert panel.points == expected[name], f"{name}: {panel}"
    assert seeded.versions["v2"].split(":", 1)[1] in panels["models"].text

    # A model without rows: every panel of its own shows why it is empty (the stream's latency is not per model).
    empty = render(f"{dashboard.url}/?{urlencode({'model': seeded.model + '_none'})}", tmp_path / "profile")
    for name in ("mae", "throughput", "drift", "models"):
        assert empty[name].state == "empty" and empty[name].points == 0, f"{name}: {empty[name]}"
        assert "No " in empty[name].text and empty[name].canvases == 0, f"{name}: {empty[name]}"
    assert empty["latency"].state in ("ready", "empty"), empty["latency"]

    # The screenshot of the filled page.
    shot = tmp_path / "dashboard.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1600", page, profile=tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = settings.runtime_dir / "screenshots" / "dashboard.png"  # docs/dashboard.png is a copy of one
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, target)
