"""A workload's real-time views in MySQL, derived from its request contract and its ``Views`` declaration.

Each workload has three tables, kept by the serving sync (``serving/sync.py``):

- **predictions**: one row per request key, the latest prediction: the model version, the request's stored fields
  (each ``contract`` field with a ``column``, typed from its kind and range), the prediction, and the actual label
  once the outcome has arrived;
- **outcomes**: key, the time the outcome became known, the observed value;
- **hourly**: per (group column, hour of the event time): predictions, their sum, completed ones, the sum of their
  labels and the sum of their loss (``core.task.Task.loss_sql``: the absolute error for a regression, the log loss
  for a binary classifier), so that ``sum_loss / completed`` is the live error of an hour.

A workload names what is its own (``Views``: the group field, the label as SQL over the outcome ``o`` and the
prediction ``p``, and any table or column names kept from before, as taxi's ``predictions_recent``). Everything
else follows: the DDL (``ddl``), the sync's statements (the templates in ``sql/serving/`` filled with the names,
``statement``), the column lists the sync writes in order. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from core.contract import RequestField

if TYPE_CHECKING:
    from core.workload import Workload

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The views' own columns, which a workload may rename (taxi keeps the names its views had before there were
# workloads); the defaults follow the workload's label and batch key.
RENAMABLE = ("actual", "completed_ts", "count", "sum_predicted", "completed", "sum_actual", "sum_loss")


@dataclass(frozen=True)
class Views:
    """What a workload declares of its real-time views.

    ``group``: the request field the hourly view groups by (a stored one: it has a ``column``). ``label``: the label
    as a SQL expression over the outcome row ``o`` and the prediction row ``p`` (``o.duration_s`` for taxi). Table
    names default to ``<workload>_predictions``, ``<workload>_outcomes`` and ``<workload>_hourly``; ``columns``
    renames any of ``RENAMABLE``."""

    group: str
    label: str
    predictions: str = ""
    outcomes: str = ""
    hourly: str = ""
    columns: tuple[tuple[str, str], ...] = ()


def sql_type(f: RequestField) -> str:
    """The MySQL type of a stored request field: from its kind, and for an integer from its recorded range."""
    if f.kind in ("key", "text"):
        return f"VARCHAR({int(f.high)})"
    if f.kind == "category":
        return f"VARCHAR({max(len(v) for v in f.values)})"
    if f.kind == "timestamp":
        return "DATETIME(3)"
    if f.kind == "number":
        return "DOUBLE"
    low, high = f.recorded_bounds
    for name, bits in (("SMALLINT", 16), ("INT", 32)):
        if -(2 ** (bits - 1)) <= low and high < 2 ** (bits - 1):
            return name
    return "BIGINT"


def _check(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what}: {name!r} is not a plain SQL identifier (letters, digits, _; at most 64)")
    return name


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool

    def ddl(self) -> str:
        return f"{self.name} {self.type} {'NULL' if self.nullable else 'NOT NULL'}"


TABLE_ROLES = ("predictions", "outcomes", "hourly")


class RealTimeViews:
    """A workload's views, every name resolved: what the sync, the monitor and the DDL read. ``tables`` renames
    tables by role (``serving.workload_tables`` of the settings, ``of``)."""

    def __init__(self, workload: Workload, tables: dict[str, str] | None = None):
        views: Views = workload.views
        request, outcome = workload.request, workload.outcome
        renamed = dict(views.columns)
        unknown = set(renamed) - set(RENAMABLE)
        if unknown:
            raise ValueError(f"{workload.name}: Views.columns renames unknown columns {sorted(unknown)}; "
                             f"known: {', '.join(RENAMABLE)}")
        names = {"actual": f"actual_{workload.label}", "completed_ts": "completed_ts", "count": workload.batch_key,
                 "sum_predicted": "sum_predicted", "completed": "completed", "sum_actual": "sum_actual",
                 "sum_loss": "sum_loss"} | renamed
        tables = tables or {}
        unknown_roles = sorted(set(tables) - set(TABLE_ROLES))
        if unknown_roles:
            raise ValueError(f"serving.workload_tables.{workload.name}: unknown roles {unknown_roles}; the roles are "
                             f"{', '.join(TABLE_ROLES)}")
        self.workload = workload.name
        self.stored = request.stored
        group = request.field(views.group)
        if group.column is None:
            raise ValueError(f"{workload.name}: the hourly view groups by {views.group!r}, a field with no column")
        time = request.field(request.event_time)
        self.names: dict[str, str] = {
            "predictions": tables.get("predictions") or views.predictions or f"{workload.name}_predictions",
            "outcomes": tables.get("outcomes") or views.outcomes or f"{workload.name}_outcomes",
            "hourly": tables.get("hourly") or views.hourly or f"{workload.name}_hourly",
            "key": request.fields[0].column,
            "time": time.column,
            "group": group.column,
            "prediction": workload.prediction_field,
            "outcome_time": outcome.time,
            "outcome_value": outcome.value,
            **names,
        }
        for what, name in self.names.items():
            _check(name, f"{workload.name} view name {what}")
        self.group_type = sql_type(group)
        self.label_sql = views.label
        self.loss_sql = workload.task.loss_sql.format(predicted=f"p.{self.prediction}", actual=f"p.{self.actual}")

    def __getattr__(self, name: str) -> str:
        try:
            return self.__dict__["names"][name]
        except KeyError:
            raise AttributeError(name) from None

    # ------------------------------------------------------------------------------------------------ columns
    @cached_property
    def prediction_columns(self) -> tuple[Column, ...]:
        """The predictions table's columns in the order the sync writes them (``PredictionRow.values``)."""
        stored = [Column(f.column, sql_type(f), not f.required and f.kind not in ("key", "timestamp"))
                  for f in self.stored]
        return (stored[0], Column("model_version", "VARCHAR(128)", False), *stored[1:],
                Column(self.prediction, "DOUBLE", False), Column("scored_ts", "DATETIME(3)", False),
                Column("event_ts", "DATETIME(3)", True))

    @cached_property
    def table_columns(self) -> dict[str, tuple[Column, ...]]:
        """Every column of each table, by table name (the sync's own columns after those it writes)."""
        key = self.prediction_columns[0]
        return {
            self.predictions: (*self.prediction_columns, Column(self.actual, "DOUBLE", True),
                               Column(self.completed_ts, "DATETIME(3)", True)),
            self.outcomes: (key, Column(self.outcome_time, "DATETIME(3)", False),
                            Column(self.outcome_value, "DOUBLE", False)),
            self.hourly: (Column(self.group, self.group_type, False), Column("hour_start", "DATETIME", False),
                          Column(self.count, "INT", False), Column(self.sum_predicted, "DOUBLE", False),
                          Column(self.completed, "INT", False), Column(self.sum_actual, "DOUBLE", False),
                          Column(self.sum_loss, "DOUBLE", False)),
        }

    # ------------------------------------------------------------------------------------------------ SQL
    def statement(self, template: str, **extra: str) -> str:
        """A statement of ``sql/serving/<template>.sql`` with this workload's names filled in."""
        from core.db import load_sql

        return load_sql(f"serving/{template}").format(
            **self.names, **extra, group_type=self.group_type, label=self.label_sql, loss=self.loss_sql,
            prediction_columns=", ".join(c.name for c in self.prediction_columns),
            prediction_values=", ".join(["%s"] * len(self.prediction_columns)),
            prediction_updates=", ".join(f"{c.name} = VALUES({c.name})" for c in self.prediction_columns[1:]))

    def ddl(self) -> list[str]:
        """``CREATE TABLE IF NOT EXISTS`` of the three tables (a no-op where a migration made them already)."""
        columns = {table: ",\n  ".join(c.ddl() for c in cols) for table, cols in self.table_columns.items()}
        return [self.statement(name, columns=columns[table])
                for name, table in (("views_predictions_table", self.predictions),
                                    ("views_outcomes_table", self.outcomes), ("views_hourly_table", self.hourly))]


def of(workload: Workload, settings=None) -> RealTimeViews:
    """The workload's views with the table names the settings give (``serving.workload_tables``), if any."""
    tables = settings.serving.workload_tables.get(workload.name) if settings is not None else None
    return RealTimeViews(workload, tables)
