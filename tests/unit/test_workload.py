"""``core.workload``: a workload is found by its folder's name, and a wrong name is refused naming the right ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest

from core import contract, workload
from core.workload import UnknownWorkload, Workload


def test_loads_the_taxi_workload_from_its_folder():
    from workloads.taxi import WORKLOAD, tlc

    wl = workload.load("taxi")
    assert wl is WORKLOAD and isinstance(wl, Workload)
    assert (wl.name, wl.dataset, wl.event_time, wl.partition_column) == \
        ("taxi", tlc.RAW_DATASET, tlc.EVENT_TIME, tlc.PARTITION_COLUMN)
    assert wl.schema.equals(tlc.RAW_SCHEMA) and wl.normalize is tlc.normalize and wl.variant is tlc.variant
    assert wl.aliases == tlc.COLUMN_ALIASES
    assert "taxi" in workload.known()


@pytest.mark.parametrize("name", ["boat", "", "taxi.tlc", "../core", "Taxi"])
def test_refuses_an_unknown_name_listing_the_known_ones(name):
    with pytest.raises(UnknownWorkload) as refused:
        workload.load(name)
    assert "taxi" in refused.value.known and refused.value.known == workload.known()
    assert "no such workload" in str(refused.value) and "taxi" in str(refused.value)


def test_known_are_the_folders_with_an_init(tmp_path):
    for name, init in (("alpha", True), ("beta", True), ("data", False), ("not-a-name", True)):
        (tmp_path / name).mkdir()
        if init:
            (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "gamma.py").write_text("")
    assert workload.known([tmp_path]) == ["alpha", "beta"]


def test_a_folder_without_a_definition_is_refused(tmp_path, monkeypatch):
    import workloads

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "__init__.py").write_text('"""No WORKLOAD here."""\n')
    monkeypatch.setattr(workloads, "__path__", [*workloads.__path__, str(tmp_path)])
    monkeypatch.setattr(workload, "folders", lambda: [Path(p) for p in workloads.__path__])
    monkeypatch.delitem(sys.modules, "workloads.empty", raising=False)
    try:
        with pytest.raises(TypeError, match="workloads.empty declares no WORKLOAD"):
            workload.load("empty")
    finally:
        sys.modules.pop("workloads.empty", None)


def test_csv_types_read_integers_as_doubles_and_know_the_aliases():
    wl = Workload(name="w", dataset="raw/w", event_time="t", partition_column="d",
                  schema=pa.schema([("t", pa.timestamp("us")), ("n", pa.int64()), ("Fee", pa.float64())]),
                  normalize=lambda t: t, check_required=lambda c: None, variant=lambda s, counts=True: "",
                  request=contract.Request("R", (contract.key("k"), contract.timestamp("t"))), outcome=None, features=None,
                  rules=lambda day: [], rule_names=(), examples=lambda df: df, label="y", task=None, model=None, baseline=None, model_name="w",
                  prediction_field="p", batch_key="ws", example={}, views=None, online=None,
                  aliases={"fee": "Fee"})
    assert wl.csv_types() == {"t": pa.timestamp("us"), "n": pa.float64(), "Fee": pa.float64(), "fee": pa.float64()}
