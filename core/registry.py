"""The model registry: artifacts in object storage, the index in MySQL.

A version is ``<name>:<major>.<minor>.0-<UTC yyyymmddTHHMM>-<git sha>`` and its
index row records what rebuilds it: data partitions, feature spec,
hyperparameters, code version and metrics. The artifact is one file whose
sha256 is in the index and in every announcement; loaders refuse a mismatch.
Promotion and rollback each update the index and announce the new production
version on the compacted ``models`` topic (a pointer, never the weights).

Two guarantees hold after any crash or retry:

- The minor of a version comes from a sequence (``model_version_counters``), and
  the unique key on ``(name, minor)`` refuses a second row with that number; a
  registration inserts, never overwrites.
- The stage change and its announcement are written in one MySQL transaction,
  the announcement into ``model_announcements_outbox`` (an outbox). A relay
  (:meth:`Registry.publish_pending`, run by ``promote``/``rollback`` after the
  commit, by a retried ``evaluate_and_promote`` and by ``lambdaml models
  announce-pending``) publishes pending rows in id order and marks a row
  published only once Kafka acknowledged it. So the topic ends with what the
  index says, even if Kafka was down when the index changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from core.settings import PROJECT_ROOT, Settings

MAJOR = 1
REGISTER_ATTEMPTS = 5  # a duplicate number means a row written outside the sequence; take the next one


class AnnouncementError(RuntimeError):
    """Kafka did not acknowledge an announcement. The index change is committed and its
    announcement stays pending in the outbox: retry the task, or run ``lambdaml models announce-pending``."""


class ArtifactError(RuntimeError):
    """The artifact is missing, corrupt or does not match its recorded sha256.

    ``reason`` is one word for metrics and logs: missing, sha256, corrupt, feature_spec, model.
    """

    def __init__(self, message: str, reason: str = "corrupt"):
        super().__init__(message)
        self.reason = reason


@dataclass
class ModelVersion:
    name: str
    version: str
    stage: str
    artifact_uri: str
    sha256: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    data_partitions: list[str]
    feature_spec: str
    code_version: str
    created_at: dt.datetime | None = None
    promoted_at: dt.datetime | None = None
    data_objects: list[dict[str, Any]] = field(default_factory=list)  # the raw objects it trained on

    def announcement(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "name": self.name, "version": self.version, "uri": self.artifact_uri,
            "sha256": self.sha256, "metrics": self.metrics, "stage": self.stage,
            "created_at": (self.created_at or dt.datetime.now(dt.UTC)).isoformat(),
        }


@dataclass
class Artifact:
    """What a model file holds besides its weights."""

    state_dict: dict
    model_config: dict
    feature_spec: str
    feature_stats: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save({"state_dict": self.state_dict, "model_config": self.model_config,
                    "feature_spec": self.feature_spec, "feature_stats": self.feature_stats,
                    "metrics": self.metrics}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> "Artifact":
        import torch

        if expected_sha256 is not None and sha256(data) != expected_sha256:
            raise ArtifactError(f"artifact sha256 {sha256(data)[:12]}… does not match the registry's "
                                f"{expected_sha256[:12]}…", reason="sha256")
        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            return cls(raw["state_dict"], raw["model_config"], raw["feature_spec"], raw.get("feature_stats", {}),
                       raw.get("metrics", {}))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt artifact
            raise ArtifactError(f"artifact cannot be loaded: {exc}") from exc

    def build_model(self, workload=None):
        """The trained network of ``workload`` (``core.workload.Workload``; taxi when none is named), in eval
        mode; ``ArtifactError`` when the artifact's features are not the ones the workload computes."""
        from core.model import ModelConfig, WideAndDeep
        from core.workload import default

        wl = workload or default()
        current = wl.features.spec_version()
        if self.feature_spec != current:
            raise ArtifactError(f"artifact was trained with features {self.feature_spec}, "
                                f"this code computes {current}", reason="feature_spec")
        model = WideAndDeep(ModelConfig.from_dict(self.model_config), architecture=wl.model)
        model.load_state_dict(self.state_dict)
        return model.eval()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "nogit"
    except (OSError, subprocess.SubprocessError):
        return "nogit"


def make_version(name: str, minor: int, when: dt.datetime, code: str) -> str:
    return f"{name}:{MAJOR}.{minor}.0-{when.strftime('%Y%m%dT%H%M')}-{code}"


class VersionParts(NamedTuple):
    name: str
    major: int
    minor: int
    when: dt.datetime
    code: str


_VERSION = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\.0-(?P<when>\d{8}T\d{4})-(?P<code>.+)$")


def parse_version(name: str, version: str) -> VersionParts | None:
    """The parts of ``make_version``'s string, or None for a string it did not make.

    The model name is given, not parsed: it may itself hold ``:`` or ``-``. Migration 005
    takes the ``minor`` column of existing rows from the same place in their version string."""
    prefix = f"{name}:"
    m = _VERSION.match(version[len(prefix):]) if version.startswith(prefix) else None
    if m is None:
        return None
    when = dt.datetime.strptime(m["when"], "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)
    return VersionParts(name, int(m["major"]), int(m["minor"]), when, m["code"])


def acknowledged_prefix(ids: list[int], results: dict[int, Any]) -> tuple[list[int], str | None]:
    """The ids, in order, up to the first one Kafka did not acknowledge (``results``: id -> delivery
    error or None), and that first error. Only these may be marked published: a later row marked
    while an earlier one stays pending would be overtaken by it when the earlier one is re-sent."""
    acked: list[int] = []
    for row_id in ids:
        if row_id not in results:
            return acked, "no acknowledgement"
        if results[row_id] is not None:
            return acked, str(results[row_id])
        acked.append(row_id)
    return acked, None


def _duplicate_key(exc: Exception) -> bool:
    """Whether a DBAPI error is MySQL's ER_DUP_ENTRY (1062)."""
    args = getattr(getattr(exc, "orig", None), "args", ())
    return bool(args) and args[0] == 1062


def _lock_name(topic: str) -> str:
    """A MySQL user-lock name (at most 64 characters) per topic: one relay at a time publishes to it."""
    return "lambdaml.outbox." + hashlib.sha256(topic.encode()).hexdigest()[:40]


class Registry:
    def __init__(self, settings: Settings, announce_timeout_s: float = 30.0):
        """``announce_timeout_s``: how long Kafka may take to acknowledge announcements before
        :class:`AnnouncementError` (librdkafka's ``message.timeout.ms``)."""
        self.settings = settings
        self.announce_timeout_s = announce_timeout_s

    # ------------------------------------------------------------------ storage
    def _engine(self):
        from core.db import engine

        return engine(self.settings)

    def _put(self, uri: str, data: bytes) -> None:
        from core import lake

        fs, path = lake.filesystem(self.settings, uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)

    def fetch(self, uri: str) -> bytes:
        from core import lake

        fs, path = lake.filesystem(self.settings, uri)
        try:
            with fs.open_input_stream(path) as src:
                return src.read()
        except (FileNotFoundError, OSError) as exc:
            raise ArtifactError(f"artifact not found at {uri}: {exc}", reason="missing") from exc

    # ------------------------------------------------------------------ register
    def register(self, name: str, artifact: Artifact, params: dict, data_partitions: list[str],
                 when: dt.datetime | None = None, data_objects: list[dict[str, Any]] | None = None) -> ModelVersion:
        """Store the artifact and insert its index row as a new candidate version.

        The minor comes from :meth:`_next_minor`, handed out once each. The row is a plain
        INSERT (never an upsert) made in the same transaction as the upload, so no one sees
        the row before its artifact, and a duplicate number fails the INSERT before anything
        is written under that version: the registration then takes the next number."""
        from sqlalchemy import text
        from sqlalchemy.exc import IntegrityError

        from core.db import load_sql

        when = when or dt.datetime.now(dt.UTC)
        code = code_version()
        data = artifact.to_bytes()
        digest = sha256(data)
        eng = self._engine()
        try:
            for _ in range(REGISTER_ATTEMPTS):
                minor = self._next_minor(eng, name)
                version = make_version(name, minor, when, code)
                uri = f"{self.settings.s3.uri('models', name, version.split(':', 1)[1])}/model.pt"
                mv = ModelVersion(name, version, "candidate", uri, digest, artifact.metrics, params,
                                  data_partitions, artifact.feature_spec, code, when,
                                  data_objects=list(data_objects or []))
                try:
                    with eng.begin() as conn:
                        conn.execute(text(load_sql("registry/insert_version")), {
                            "name": name, "version": version, "minor": minor, "stage": "candidate",
                            "artifact_uri": uri, "sha256": digest, "metrics_json": json.dumps(mv.metrics),
                            "params_json": json.dumps(params), "data_partitions": json.dumps(data_partitions),
                            "data_objects": json.dumps(mv.data_objects),
                            "feature_spec": mv.feature_spec, "code_version": code,
                        })
                        self._put(uri, data)
                except IntegrityError as exc:
                    if _duplicate_key(exc):
                        continue
                    raise
                return mv
            raise RuntimeError(f"could not register {name}: {REGISTER_ATTEMPTS} version numbers in a row were taken")
        finally:
            eng.dispose()

    @staticmethod
    def _next_minor(eng, name: str) -> int:
        """The next minor of ``name``, from its row in ``model_version_counters``.

        The row lock of the upsert serializes concurrent registrations, and a number is
        never handed out twice. It also never falls below the highest minor in the index
        (rows written outside the sequence, e.g. before migration 005)."""
        from sqlalchemy import text

        from core.db import load_sql

        with eng.begin() as conn:
            highest = conn.execute(text(load_sql("registry/max_minor")), {"name": name}).scalar()
            floor = 0 if highest is None else int(highest) + 1
            conn.execute(text(load_sql("registry/next_minor")), {"name": name, "floor": floor})
            return int(conn.execute(text(load_sql("registry/last_minor")), {"name": name}).scalar_one())

    # ------------------------------------------------------------------ queries
    def list(self, name: str) -> list[ModelVersion]:
        from sqlalchemy import text

        from core.db import load_sql

        eng = self._engine()
        try:
            with eng.connect() as conn:
                rows = conn.execute(text(load_sql("registry/list_versions")), {"name": name}).mappings().all()
        finally:
            eng.dispose()
        return [_from_row(r) for r in rows]

    def get(self, name: str, version: str) -> ModelVersion:
        from sqlalchemy import text

        from core.db import load_sql

        eng = self._engine()
        try:
            with eng.connect() as conn:
                row = conn.execute(text(load_sql("registry/get_version")),
                                   {"name": name, "version": version}).mappings().first()
        finally:
            eng.dispose()
        if row is None:
            raise KeyError(f"no model version {version!r} of {name!r}")
        return _from_row(row)

    def production(self, name: str) -> ModelVersion | None:
        return next((v for v in self.list(name) if v.stage == "production"), None)

    def load(self, mv: ModelVersion) -> Artifact:
        return Artifact.from_bytes(self.fetch(mv.artifact_uri), expected_sha256=mv.sha256)

    def update_metrics(self, name: str, version: str, metrics: dict) -> None:
        from sqlalchemy import text

        from core.db import load_sql

        eng = self._engine()
        try:
            with eng.begin() as conn:
                conn.execute(text(load_sql("registry/update_metrics")),
                             {"name": name, "version": version, "metrics_json": json.dumps(metrics)})
        finally:
            eng.dispose()

    # ------------------------------------------------------------------ lifecycle
    def promote(self, name: str, version: str) -> ModelVersion:
        """Make ``version`` the production model and announce it on the ``models`` topic.

        The stage change and the announcement are one transaction (the outbox); the
        announcement is published after the commit. If Kafka does not acknowledge it,
        :class:`AnnouncementError` is raised with the promotion committed: a retry (or
        ``lambdaml models announce-pending``) publishes it."""
        eng = self._engine()
        try:
            with eng.begin() as conn:
                self._lock(conn, name)
                mv = self._set_production(conn, name, version)
        finally:
            eng.dispose()
        self.publish_pending()
        return mv

    def rollback(self, name: str) -> ModelVersion:
        """Promote the version that was in production before the current one (one transaction, as promote)."""
        from sqlalchemy import text

        from core.db import load_sql

        eng = self._engine()
        try:
            with eng.begin() as conn:
                self._lock(conn, name)
                current = conn.execute(text(load_sql("registry/current_production")), {"name": name}).scalar()
                if current is None:
                    raise KeyError(f"{name!r} has no production version to roll back from")
                previous = conn.execute(text(load_sql("registry/previous_production")),
                                        {"name": name, "current": current}).scalar()
                if previous is None:
                    raise KeyError(f"{name!r} has no earlier production version than {current}")
                mv = self._set_production(conn, name, previous)
        finally:
            eng.dispose()
        self.publish_pending()
        return mv

    @staticmethod
    def _lock(conn, name: str) -> None:
        """Lock the model's index rows: promotions and rollbacks of one model commit one after the
        other, so their outbox ids are in the order of their stage changes."""
        from sqlalchemy import text

        from core.db import load_sql

        conn.execute(text(load_sql("registry/lock_model")), {"name": name}).all()

    def _set_production(self, conn, name: str, version: str) -> ModelVersion:
        """Within the caller's transaction: the stage change and its pending announcement."""
        from sqlalchemy import text

        from core import kafka
        from core.db import load_sql

        params = {"name": name, "version": version}
        if conn.execute(text(load_sql("registry/get_version")), params).first() is None:
            raise KeyError(f"no model version {version!r} of {name!r}")
        conn.execute(text(load_sql("registry/archive_production")), params)
        conn.execute(text(load_sql("registry/set_production")), params)
        mv = _from_row(conn.execute(text(load_sql("registry/get_version")), params).mappings().one())
        conn.execute(text(load_sql("registry/insert_announcement")), {
            "topic": self.settings.kafka.models_topic, "msg_key": name,
            "value": kafka.encode(mv.announcement()).decode()})
        return mv

    def publish_pending(self) -> int:
        """The outbox relay: publish every pending announcement of this topic, in id order.

        A row is marked published only after Kafka acknowledged it, and only while every
        earlier row was acknowledged too, so a later retry re-sends in the original order.
        Publishing a row twice (a crash between the ack and the mark, or two relays) is
        harmless: the topic is compacted by model name, the value is the same, and the
        service ignores an announcement of the version it already serves. A MySQL user lock
        lets one relay at a time publish to a topic. Returns the number of rows published;
        raises :class:`AnnouncementError` if any stays pending."""
        from sqlalchemy import bindparam, text

        from core.db import load_sql

        topic = self.settings.kafka.models_topic
        lock = _lock_name(topic)
        wait_s = int(self.announce_timeout_s) + 60
        eng = self._engine()
        try:
            with eng.connect() as conn:
                if conn.execute(text("SELECT GET_LOCK(:lock, :wait)"), {"lock": lock, "wait": wait_s}).scalar() != 1:
                    raise AnnouncementError(f"another relay held the outbox of {topic} for over {wait_s}s")
                conn.commit()
                try:
                    rows = conn.execute(text(load_sql("registry/pending_announcements")), {"topic": topic}).all()
                    conn.commit()
                    if not rows:
                        return 0
                    acked, error = self._send(rows)
                    if acked:
                        conn.execute(text(load_sql("registry/mark_announced")).bindparams(
                            bindparam("ids", expanding=True)), {"ids": acked})
                        conn.commit()
                finally:
                    conn.execute(text("SELECT RELEASE_LOCK(:lock)"), {"lock": lock})
                    conn.commit()
        finally:
            eng.dispose()
        if len(acked) < len(rows):
            raise AnnouncementError(
                f"Kafka at {self.settings.kafka.bootstrap} did not acknowledge {len(rows) - len(acked)} "
                f"announcement(s) on {topic} within {self.announce_timeout_s:g}s ({error}); the index change is "
                f"committed and its announcement stays pending: retry the task or run "
                f"`lambdaml models announce-pending`")
        return len(acked)

    def _send(self, rows) -> tuple[list[int], str | None]:
        """Produce ``rows`` in order; the ids of the longest acknowledged prefix, and the first error."""
        from core import kafka

        results: dict[int, Any] = {}
        timeout_ms = max(1000, int(self.announce_timeout_s * 1000))
        producer = kafka.producer(self.settings, **{"message.timeout.ms": timeout_ms})
        for row in rows:
            producer.produce(row.topic, key=row.msg_key.encode(), value=row.value.encode(),
                             on_delivery=lambda err, _msg, row_id=row.id: results.__setitem__(row_id, err))
        deadline = time.monotonic() + self.announce_timeout_s + 10
        while len(results) < len(rows) and time.monotonic() < deadline:
            producer.flush(max(0.1, deadline - time.monotonic()))
        return acknowledged_prefix([row.id for row in rows], results)


def _from_row(r) -> ModelVersion:
    def js(v):
        return json.loads(v) if isinstance(v, str | bytes) else (v or {})

    return ModelVersion(r["name"], r["version"], r["stage"], r["artifact_uri"], r["sha256"], js(r["metrics_json"]),
                        js(r["params_json"]), js(r["data_partitions"]) or [], r["feature_spec"], r["code_version"],
                        r["created_at"], r["promoted_at"], js(r.get("data_objects")) or [])
