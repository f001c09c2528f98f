"""What the layers know of a workload: its generic definition, and how one is found by name.

A workload is one package, ``workloads/<name>/``, whose ``__init__`` declares ``WORKLOAD``, a ``Workload``.
The layers read a workload's data only through that definition, never by its field names. ``load`` imports the
package by name at run time, so ``core`` holds no import of anything above it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from core.architecture import Architecture
from core.contract import Outcome, Request
from core.task import Baseline, Task
from core.views import Views

PACKAGE = "workloads"
# The workload ``POST /v1/predict`` and the un-prefixed topics serve, as before there were several.
DEFAULT = "taxi"


class FeatureSet(Protocol):
    """A workload's features (e.g. the module ``workloads/taxi/features.py``): each defined once with a Spark form
    and an in-process form."""

    FEATURES: tuple[Any, ...]  # each with .name, .kind ("categorical"/"numeric"), .cardinality, .spark, .numpy
    FEATURE_NAMES: tuple[str, ...]
    CATEGORICAL: tuple[Any, ...]
    NUMERIC: tuple[Any, ...]

    def spec_version(self) -> str: ...

    def compute_numpy(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def with_features(self, df: Any) -> Any: ...


@dataclass(frozen=True)
class Workload:
    """What a layer needs to know of a workload's raw data."""

    name: str
    dataset: str  # raw/<dataset>/ under the lake root
    event_time: str  # the column whose day places a row
    partition_column: str  # <partition_column>=YYYY-MM-DD
    schema: pa.Schema
    normalize: Callable[[pa.Table], pa.Table]
    check_required: Callable[[Iterable[str]], None]
    variant: Callable[..., str]  # (schema, counts=True) -> which known variant, in words
    request: Request  # the online request (core.contract): the endpoint's, the stream's and the sync's rules
    outcome: Outcome  # the outcome event and the observed value the label derives from; joins by the request's key
    features: FeatureSet
    # The named validation rules: for a partition's day, (name, Spark condition that means *bad*) pairs in the
    # order they are checked (a row is quarantined with the first it fails); ``rule_names`` lists them all.
    rules: Callable[[dt.date], list[tuple[str, Any]]]
    rule_names: tuple[str, ...]
    # Validated raw rows (Spark) to training examples: the request's fields, as the online request carries them,
    # plus ``label``, the value the model learns (derived from the outcome the raw row records).
    examples: Callable[[Any], Any]
    label: str
    task: Task  # what the model learns of the label and how it is judged (core.task)
    model: Architecture  # where the features go in the wide & deep network, with its tunable widths
    baseline: Baseline  # the naive model to beat
    model_name: str  # the name its versions are registered under (core.registry)
    # Serving: the name of the predicted value in responses and prediction events (``predicted_duration_s``), the
    # key of a batch body (``{"trips": [...]}``), and one valid request (warms a model up; the API's example).
    prediction_field: str
    batch_key: str
    example: dict[str, Any]
    views: Views  # its real-time views in MySQL (core.views): the group of the hourly view, the label as SQL
    # Raw rows (``schema``) to the columns of its online traffic, pure pyarrow: each request field by its name (the
    # key may be absent), the outcome's time and its value. What ``batch.replay`` sends as live requests/outcomes.
    online: Callable[[pa.Table], pa.Table]
    aliases: dict[str, str] = field(default_factory=dict)

    def __reduce__(self):
        """A workload pickles as its name and is loaded again from its folder on the other side (a Ray trial, a
        worker process): its definition holds modules and functions, which pickle cannot carry."""
        return load, (self.name,)

    @property
    def entity(self) -> str:
        """The workload's folder name in every stage of the lake: ``trips`` in ``raw/trips``."""
        return self.dataset.rsplit("/", 1)[-1]

    def stage(self, stage: str) -> str:
        """The dataset of one stage of the lake: ``raw``, ``validated`` or ``quarantine`` (``validated/trips``)."""
        return f"{stage}/{self.entity}"

    def dag_id(self, kind: str) -> str:
        """The id of one of the workload's DAGs (``batch_training``, ...): the kind for the default workload, whose
        DAGs kept their names when there were others, ``<name>_<kind>`` for any other."""
        return kind if self.name == DEFAULT else f"{self.name}_{kind}"

    def partition_path(self, day: dt.date, stage: str = "raw") -> str:
        """One day's partition of a stage, from the lake root: ``raw/trips/pickup_date=<day>``."""
        return f"{self.stage(stage)}/{self.partition_column}={day.isoformat()}"

    def partition(self, base: str, day: dt.date, stage: str = "raw") -> str:
        """One day's partition of a stage under the lake root ``base``: ``<base>/raw/trips/pickup_date=<day>``."""
        return f"{base}/{self.partition_path(day, stage)}"

    def csv_types(self) -> dict[str, pa.DataType]:
        """Column types to read a CSV with: integers as doubles ("1.0" and "1" both read; the normaliser casts)."""
        out: dict[str, pa.DataType] = {}
        for fld in self.schema:
            typ = pa.float64() if pa.types.is_integer(fld.type) else fld.type
            out[fld.name] = typ
            for alias, canonical in self.aliases.items():
                if canonical == fld.name:
                    out[alias] = typ
        return out


class UnknownWorkload(LookupError):
    """No workload folder of that name; ``known`` lists the ones there are."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"no such workload: {name!r} (known: {', '.join(known) or 'none'}; "
                         f"a workload is a folder {PACKAGE}/<name>/ with an __init__.py declaring WORKLOAD)")


def folders() -> list[Path]:
    """Where the importable ``workloads`` package lives (looked up without importing anything)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {PACKAGE} package is not importable: install the project "
                                  f"(make install) or run from the repository root", name=PACKAGE)
    return [Path(p) for p in spec.submodule_search_locations]


def known(where: Iterable[Path] | None = None) -> list[str]:
    """The workload folders there are: the folders under ``workloads/`` with an ``__init__.py``, sorted."""
    return sorted({p.name for folder in (folders() if where is None else where) if folder.is_dir()
                   for p in folder.iterdir() if (p / "__init__.py").is_file() and p.name.isidentifier()})


@cache
def default() -> Workload:
    """The ``DEFAULT`` workload, loaded once."""
    return load(DEFAULT)


def module(name: str, part: str) -> Any:
    """A module of a workload's folder by name (``module("bike", "generate")``): what is not part of the light
    ``WORKLOAD`` definition, such as its generator. ``UnknownWorkload`` when there is no such folder."""
    names = known()
    if name not in names:
        raise UnknownWorkload(name, names)
    return importlib.import_module(f"{PACKAGE}.{name}.{part}")


def load(name: str) -> Workload:
    """The ``WORKLOAD`` declared by ``workloads/<name>/``; ``UnknownWorkload`` when there is no such folder."""
    names = known()
    # Only a listed folder is imported: a name is never a dotted path into something else.
    if name not in names:
        raise UnknownWorkload(name, names)
    module = importlib.import_module(f"{PACKAGE}.{name}")
    definition = getattr(module, "WORKLOAD", None)
    if not isinstance(definition, Workload):
        raise TypeError(f"{PACKAGE}.{name} declares no WORKLOAD (a core.workload.Workload); "
                        f"it has {type(definition).__name__}")
    return definition
