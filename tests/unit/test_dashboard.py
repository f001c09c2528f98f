"""The dashboard's panel shaping (rows in, uPlot's aligned data out) and its routes that need no database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from core.settings import Settings
from serving import dashboard as d
from serving.monitor import LIVE_MAE_ROW

T0 = dt.datetime(2026, 11, 23, 15, 0)
M0 = int(T0.replace(tzinfo=dt.UTC).timestamp()) // 60  # minute since the epoch, as the SQL returns it


def test_version_pattern_escapes_like_wildcards():
    assert d.version_pattern("trip_duration") == r"trip\_duration:%"
    assert d.version_pattern(r"a%b\c") == r"a\%b\\c:%"
    assert d.short_version("trip_duration:1.4.0-20261123T1015-abc") == "1.4.0-20261123T1015-abc"
    assert d.short_version("unnamed") == "unnamed"


def test_minutes_are_defaulted_and_bounded():
    assert d.minutes_arg(None) == d.DEFAULT_MINUTES
    assert d.minutes_arg(1) == 5
    assert d.minutes_arg(60) == 60
    assert d.minutes_arg(10**9) == d.MAX_MINUTES


def test_align_fills_gaps_with_none():
    x, series = d.align({"a": {60.0: 1.0, 180.0: 3.0}, "b": {120.0: 2.0}})
    assert x == [60.0, 120.0, 180.0]
    assert series == [{"label": "a", "values": [1.0, None, 3.0]}, {"label": "b", "values": [None, 2.0, None]}]
    assert d.count_points(series) == 3


def test_mae_is_one_line_per_version_on_unix_seconds():
    rows = [("m:1.0", M0, 120.0), ("m:1.0", M0 + 1, 110.0), ("m:1.1", M0 + 1, 60.0)]
    panel = d.mae_panel(rows, "m", 60)
    assert panel["kind"] == "time"
    assert panel["x"] == [M0 * 60, (M0 + 1) * 60]
    assert panel["series"] == [{"label": "1.0", "values": [120.0, 110.0]}, {"label": "1.1", "values": [None, 60.0]}]
    assert panel["points"] == 3


@pytest.mark.parametrize("build", [lambda: d.mae_panel([], "m", 60), lambda: d.throughput_panel([], "m", 60),
                                   lambda: d.latency_panel([], [], "m", 60), lambda: d.drift_panel([], "m", 0.2),
                                   lambda: d.models_panel([], "m")])
def test_no_rows_is_an_empty_panel_that_says_why(build):
    panel = build()
    assert panel["points"] == 0 and panel["x"] == []
    assert panel["empty"].startswith("No ") and " m" in panel["empty"]


def test_latency_merges_request_percentiles_and_stream_medians():
    panel = d.latency_panel([(M0, 120.0, 140.0, 150.0)], [(M0, 90.0), (M0 + 1, 95.0)], "m", 60)
    assert panel["x"] == [M0 * 60, (M0 + 1) * 60]
    assert [s["values"] for s in panel["series"]] == [[120.0, None], [140.0, None], [150.0, None], [90.0, 95.0]]
    assert panel["points"] == 5 and panel["unit"] == "milliseconds"


def test_drift_bars_per_feature_and_the_live_mae_row_as_a_note():
    rows = [(LIVE_MAE_ROW, "m:1.1", T0, 0.0, 210.4, 180.0),
            ("log_distance", "m:1.1", T0, 0.05, 210.4, 180.0),
            ("pu_zone", "m:1.1", T0, 0.31, 210.4, 180.0)]
    panel = d.drift_panel(rows, "m", 0.2)
    assert panel["categories"] == ["log_distance", "pu_zone"]
    assert panel["x"] == [0, 1] and panel["series"][0]["values"] == [0.05, 0.31]
    assert panel["over"] == [False, True] and panel["threshold"] == 0.2 and panel["points"] == 2
    assert panel["note"] == "live MAE 210 s vs test MAE 180 s (1.1, window to 2026-11-23 15:00 UTC)"
    only_mae = d.drift_panel([(LIVE_MAE_ROW, "m:1.1", T0, 0.0, None, None)], "m", 0.2)
    assert only_mae["points"] == 0 and only_mae["note"].startswith("no completed trips (1.1")


def test_model_timeline_one_lane_per_version_oldest_first():
    later = T0 + dt.timedelta(minutes=20)
    rows = [("m:1.1", "production", later, later), ("m:1.0", "archived", T0, None)]  # newest first, as the SQL
    panel = d.models_panel(rows, "m")
    assert panel["lanes"] == ["1.0", "1.1"]
    assert panel["x"] == [d.unix(T0), d.unix(later)]
    assert panel["series"] == [{"label": "created", "values": [0, 1]}, {"label": "promoted", "values": [None, 1]}]
    assert panel["points"] == 3
    assert panel["table"] == [
        {"version": "1.1", "stage": "production", "created_at": "2026-11-23 15:20:00",
         "promoted_at": "2026-11-23 15:20:00"},
        {"version": "1.0", "stage": "archived", "created_at": "2026-11-23 15:00:00", "promoted_at": None}]


def test_same_instant_events_of_one_kind_keep_both_points():
    rows = [("m:1.1", "candidate", T0, None), ("m:1.0", "candidate", T0, None)]
    panel = d.models_panel(rows, "m")
    assert panel["x"] == [d.unix(T0), d.unix(T0) + 0.001]
    assert panel["series"][0]["values"] == [0, 1] and panel["points"] == 2


def test_unix_reads_naive_timestamps_as_utc():
    assert d.unix(dt.datetime(1970, 1, 1, 0, 1, 0, 500000)) == 60.5


# ----------------------------------------------------------------------------------------------- routes
@pytest.fixture
def fake_assets(tmp_path: Path) -> Settings:
    settings = Settings(cache_dir=tmp_path)
    folder = d.asset_dir(settings)
    folder.mkdir(parents=True)
    for name in d.UPLOT_FILES:
        (folder / name).write_text(f"/* {name} */")
    return settings


def test_missing_assets_say_to_run_install(tmp_path: Path):
    with pytest.raises(d.AssetsMissing, match="run `lambdaml install`"):
        d.create_app(Settings(cache_dir=tmp_path))


def test_page_assets_and_health_need_no_database(fake_assets: Settings):
    client = d.create_app(fake_assets).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    page = client.get("/?model=m_x&minutes=30").get_data(as_text=True)
    for name in d.PANELS:
        assert f'data-panel="{name}"' in page and f"/api/{name}.json?model=m_x&amp;minutes=30" in page
    assert "/assets/uPlot.iife.min.js" in page
    assert client.get("/assets/uPlot.min.css").get_data(as_text=True) == "/* uPlot.min.css */"
    assert client.get("/assets/uPlot.esm.js").status_code == 404
    missing = client.get("/api/nope.json")
    assert missing.status_code == 404 and "mae" in missing.get_json()["error"]
