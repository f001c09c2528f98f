"""The layers know no workload (issue 18): a ratchet on the taxi names and imports left in them.

``core/``, ``batch/``, ``speed/``, ``serving/`` and ``dags/`` are to hold no workload's field names and no import
of a workload's package. Today some still do; the lists below name them. Each test compares with ``==``, so it fails
both when a new file starts naming taxi fields (or importing the taxi package) and when a listed file no longer
does: then take it off the list. The lists only ever shrink. Pure: it reads the files, nothing else.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "batch", "speed", "serving", "dags")

# Empty now: no layer file names a taxi field or imports the taxi package. Kept as the place to list a file that
# must, with the reason, should one ever have to (a test fails for any file not listed).
STILL_TO_MOVE: frozenset[str] = frozenset()
# A layer reaches a workload through ``core.workload.load``, never by importing its package.
STILL_IMPORTS_TAXI: frozenset[str] = frozenset()

# Field names that are also ordinary words in code (the TLC's ``extra`` fee and pydantic's ``extra="forbid"``,
# every event's ``schema_version``): matching them would flag files for reasons that are not the workload.
GENERIC = frozenset({"extra", "schema_version"})


def taxi_names() -> frozenset[str]:
    """The taxi workload's raw columns (with their known aliases), its request fields and its label."""
    from core.events import TripRequest
    from workloads.taxi import tlc

    names = set(tlc.RAW_SCHEMA.names) | set(tlc.COLUMN_ALIASES) | set(TripRequest.model_fields) | {"trip_duration"}
    return frozenset(names - GENERIC)


@cache
def layer_files() -> dict[str, str]:
    """Every Python file of the layers, by its path from the repository root, with its text."""
    return {path.relative_to(ROOT).as_posix(): path.read_text()
            for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py")) if "__pycache__" not in path.parts}


def naming(names: frozenset[str]) -> dict[str, list[str]]:
    """The layer files in which any of ``names`` appears as a whole word, with the names found."""
    word = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True))
                      + r")(?![A-Za-z0-9_])")
    found = {path: sorted(set(word.findall(text))) for path, text in layer_files().items()}
    return {path: hits for path, hits in found.items() if hits}


def imported_modules(text: str) -> set[str]:
    """The modules a file imports: ``import a.b``, ``from a.b import c`` (as ``a.b`` and ``a.b.c``), and a literal
    ``importlib.import_module("a.b")`` / ``__import__("a.b")``, which is a static import written another way."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                out.add(node.args[0].value)
    return out


def importers(package: str) -> set[str]:
    """The layer files that import ``package`` or anything in it."""
    return {path for path, text in layer_files().items()
            if any(m == package or m.startswith(package + ".") for m in imported_modules(text))}


def test_the_names_are_the_taxi_workloads():
    names = taxi_names()
    assert {"PULocationID", "tpep_pickup_datetime", "trip_distance", "trip_id", "pickup_ts", "airport_fee",
            "trip_duration"} <= names
    assert not names & GENERIC


def test_the_layers_name_no_taxi_field_beyond_the_files_still_to_move():
    found = naming(taxi_names())
    assert layer_files(), "no layer file found: the test reads nothing"
    new = {path: found[path] for path in sorted(set(found) - STILL_TO_MOVE)}
    assert not new, f"these layer files name taxi fields; take the names to workloads/taxi/ instead: {new}"
    gone = sorted(STILL_TO_MOVE - set(found))
    assert not gone, f"these files no longer name taxi fields: remove them from STILL_TO_MOVE: {gone}"
    assert set(found) == STILL_TO_MOVE


def bike_names() -> frozenset[str]:
    """The bike workload's raw columns, its request and outcome fields and its label."""
    from workloads.bike import WORKLOAD

    names = set(WORKLOAD.schema.names) | set(WORKLOAD.aliases) | {f.name for f in WORKLOAD.request.fields}
    names |= {WORKLOAD.outcome.time, WORKLOAD.label}
    return frozenset(names - GENERIC - {"duration_s"})  # duration_s: taxi's label too, ratcheted above


def test_the_layers_name_no_bike_field():
    names = bike_names()
    assert {"ride_id", "started_at", "start_station_id", "member_casual", "rideable_type", "overtime"} <= names
    assert not naming(names), "the layers name bike fields: take them to workloads/bike/"


def test_the_layers_import_the_taxi_workload_only_where_they_still_do():
    found = importers("workloads.taxi")
    new = sorted(found - STILL_IMPORTS_TAXI)
    assert not new, f"these layer files import workloads.taxi; use core.workload.load instead: {new}"
    gone = sorted(STILL_IMPORTS_TAXI - found)
    assert not gone, f"these files no longer import workloads.taxi: remove them from STILL_IMPORTS_TAXI: {gone}"
    assert found == STILL_IMPORTS_TAXI


def test_core_imports_no_workload_but_by_name():
    """``core`` sits below the workloads: it finds one by name (``core.workload.load``, importlib), never by an
    import, other than the taxi imports the ratchet above still lists (no other workload, ever)."""
    core = {path for path in layer_files() if path.startswith("core/")}
    any_workload = importers("workloads") & core
    assert any_workload <= STILL_IMPORTS_TAXI, sorted(any_workload - STILL_IMPORTS_TAXI)
    for path in any_workload:
        other = {m for m in imported_modules(layer_files()[path])
                 if m.startswith("workloads") and not (m == "workloads.taxi" or m.startswith("workloads.taxi."))}
        assert not other, f"{path} imports {sorted(other)}"
    assert "core/workload.py" not in any_workload
    loader = layer_files()["core/workload.py"]
    assert "importlib.import_module(f\"{PACKAGE}.{name}\")" in loader and 'PACKAGE = "workloads"' in loader
