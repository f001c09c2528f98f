"""The model registry: artifacts in object storage, the index in MySQL.

A version is ``<name>:<major>.<minor>.0-<UTC yyyymmddTHHMM>-<git sha>`` and its
index row records what rebuilds it: data partitions, feature spec,
hyperparameters, code version and metrics. The artifact is one file whose
sha256 is in the index and in every announcement; loaders refuse a mismatch.
Promotion and rollback each update the index and announce the new production
version on the compacted ``models`` topic (a pointer, never the weights).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

from core.settings import PROJECT_ROOT, Settings

MAJOR = 1


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

    def build_model(self):
        from core.features import spec_version
        from core.model import ModelConfig, WideAndDeep

        if self.feature_spec != spec_version():
            raise ArtifactError(f"artifact was trained with features {self.feature_spec}, "
                                f"this code computes {spec_version()}", reason="feature_spec")
        model = WideAndDeep(ModelConfig(**self.model_config))
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


class Registry:
    def __init__(self, settings: Settings):
        self.settings = settings

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
                 when: dt.datetime | None = None) -> ModelVersion:
        from sqlalchemy import text

        from core.db import load_sql

        when = when or dt.datetime.now(dt.UTC)
        eng = self._engine()
        try:
            with eng.connect() as conn:
                minor = int(conn.execute(text(load_sql("registry/count_versions")), {"name": name}).scalar() or 0)
            code = code_version()
            version = make_version(name, minor, when, code)
            data = artifact.to_bytes()
            uri = f"{self.settings.s3.uri('models', name, version.split(':', 1)[1])}/model.pt"
            self._put(uri, data)
            mv = ModelVersion(name, version, "candidate", uri, sha256(data), artifact.metrics, params,
                              data_partitions, artifact.feature_spec, code, when)
            with eng.begin() as conn:
                conn.execute(text(load_sql("registry/upsert_version")), {
                    "name": name, "version": version, "stage": "candidate", "artifact_uri": uri,
                    "sha256": mv.sha256, "metrics_json": json.dumps(mv.metrics), "params_json": json.dumps(params),
                    "data_partitions": json.dumps(data_partitions), "feature_spec": mv.feature_spec,
                    "code_version": mv.code_version,
                })
            return mv
        finally:
            eng.dispose()

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
        """Make ``version`` the production model and announce it on the ``models`` topic."""
        from sqlalchemy import text

        from core.db import load_sql

        self.get(name, version)  # raises if unknown
        eng = self._engine()
        try:
            with eng.begin() as conn:
                conn.execute(text(load_sql("registry/archive_production")), {"name": name, "version": version})
                conn.execute(text(load_sql("registry/set_production")), {"name": name, "version": version})
        finally:
            eng.dispose()
        mv = self.get(name, version)
        self.announce(mv)
        return mv

    def rollback(self, name: str) -> ModelVersion:
        """Promote the version that was in production before the current one."""
        from sqlalchemy import text

        from core.db import load_sql

        current = self.production(name)
        if current is None:
            raise KeyError(f"{name!r} has no production version to roll back from")
        eng = self._engine()
        try:
            with eng.connect() as conn:
                previous = conn.execute(text(load_sql("registry/previous_production")),
                                        {"name": name, "current": current.version}).scalar()
        finally:
            eng.dispose()
        if previous is None:
            raise KeyError(f"{name!r} has no earlier production version than {current.version}")
        return self.promote(name, previous)

    def announce(self, mv: ModelVersion) -> None:
        from core import kafka

        producer = kafka.producer(self.settings)
        producer.produce(self.settings.kafka.models_topic, key=mv.name.encode(), value=kafka.encode(mv.announcement()))
        if producer.flush(30) != 0:
            raise RuntimeError(f"could not announce {mv.version} on {self.settings.kafka.models_topic}")


def _from_row(r) -> ModelVersion:
    def js(v):
        return json.loads(v) if isinstance(v, str | bytes) else (v or {})

    return ModelVersion(r["name"], r["version"], r["stage"], r["artifact_uri"], r["sha256"], js(r["metrics_json"]),
                        js(r["params_json"]), js(r["data_partitions"]) or [], r["feature_spec"], r["code_version"],
                        r["created_at"], r["promoted_at"])
