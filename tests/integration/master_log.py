"""A private master log for tests: events encoded as the stream and the replay encode them, written as the lake sink
lays them out (``<master_events>/topic=<topic>/date=<arrival date>/``, one partition, offsets in order), under a
path of the test's own (``speed.lake_sink_path``), so that the batch views can be recomputed from it without a
lake sink and without anyone else's events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core import contract, lake
from core.s3 import delete_prefix
from core.settings import Settings
from core.workload import load
from speed.stream import prediction

SCHEMA = pa.schema([("partition", pa.int32()), ("offset", pa.int64()), ("timestamp", pa.timestamp("us", "UTC")),
                    ("key", pa.binary()), ("value", pa.binary())])


def private(settings: Settings, tag: str) -> Settings:
    """``settings`` with a master log of the test's own."""
    return settings.model_copy(update={"speed": settings.speed.model_copy(
        update={"lake_sink_path": settings.s3.uri("tests", f"master-{tag}")})})


class MasterLog:
    """Appends a workload's predictions and outcomes to a private master log, as the lake sink would."""

    def __init__(self, settings: Settings, workload: str):
        self.settings, self.wl = settings, load(workload)
        self.topics = settings.kafka.for_workload(workload)
        self.request = contract.request_model(self.wl.request)
        self.outcome = contract.outcome_model(self.wl.request, self.wl.outcome)
        self.offsets: dict[str, int] = {}
        self.pending: dict[tuple[str, dt.date], list[dict[str, Any]]] = {}

    def _add(self, topic: str, arrived: dt.datetime, key: str, value: bytes) -> None:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        self.pending.setdefault((topic, arrived.date()), []).append(
            {"partition": 0, "offset": offset, "timestamp": arrived.replace(tzinfo=dt.UTC), "key": key.encode(),
             "value": value})

    def predicted(self, body: dict[str, Any], predicted: float, version: str, arrived: dt.datetime) -> None:
        """The stream's prediction event of the request ``body`` (by field name), scored at ``arrived``."""
        request = self.request(**body)
        when = arrived.replace(tzinfo=dt.UTC)
        self._add(self.topics.predictions, arrived, body[self.wl.request.key],
                  prediction(request, predicted, version, when, when, self.wl))

    def completed(self, key: str, at: dt.datetime, value: float) -> None:
        """The outcome event of ``key``, known at ``at`` (and arriving then)."""
        event = self.outcome(**{self.wl.request.key: key, self.wl.outcome.time: at.replace(tzinfo=dt.UTC),
                                self.wl.outcome.value: value})
        self._add(self.topics.completed, at, key, event.model_dump_json().encode())

    def raw(self, topic: str, arrived: dt.datetime, key: str, value: bytes) -> None:
        self._add(topic, arrived, key, value)

    def flush(self) -> None:
        """Write what was added: one file per topic and arrival date, as one lake-sink batch would."""
        for (topic, date), rows in self.pending.items():
            uri = f"{self.settings.master_events_uri}/topic={topic}/date={date.isoformat()}"
            fs, path = lake.filesystem(self.settings, uri)
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), f"{path}/part-{uuid.uuid4().hex}.parquet",
                           filesystem=fs)
        self.pending.clear()

    def delete(self) -> None:
        delete_prefix(self.settings, self.settings.master_events_uri)
