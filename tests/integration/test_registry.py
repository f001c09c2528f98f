"""The registry on the real stack: artifact on S3, index in MariaDB, announcements on Kafka."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from core import lake
from core import kafka as k
from core.model import ModelConfig, WideAndDeep
from core.registry import AnnouncementError, Artifact, ArtifactError, Registry, code_version, make_version, \
    parse_version
from core.settings import PROJECT_ROOT
from workloads.taxi import features


def _artifact(seed: int) -> Artifact:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden=[8])
    return Artifact(WideAndDeep(cfg).state_dict(), cfg.to_dict(), features.spec_version(), metrics={"seed": seed})


def _announcements(settings, name: str) -> list[dict]:
    """Every record of ``name`` on the models topic, oldest first."""
    consumer = k.consumer(settings, group_id=f"it-reg-{name}")
    low, high = consumer.get_watermark_offsets(TopicPartition(settings.kafka.models_topic, 0), timeout=10)
    consumer.assign([TopicPartition(settings.kafka.models_topic, 0, low)])
    found, deadline = [], time.monotonic() + 30
    try:
        while high > low and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            if msg.key() == name.encode():
                found.append(k.decode(msg.value()))
            if msg.offset() >= high - 1:
                break
    finally:
        consumer.close()
    return found


def _latest_announcement(settings, name: str) -> dict | None:
    found = _announcements(settings, name)
    return found[-1] if found else None


def _sql(settings, statement: str, **params) -> list:
    from sqlalchemy import text

    from core.db import engine

    eng = engine(settings)
    try:
        with eng.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        eng.dispose()


def _forget(settings, name: str) -> None:
    """Remove a test model's rows and artifacts (the shared stack outlives the test)."""
    _sql(settings, "DELETE FROM model_versions WHERE name = :n", n=name)
    _sql(settings, "DELETE FROM model_version_counters WHERE name = :n", n=name)
    _sql(settings, "DELETE FROM model_announcements_outbox WHERE msg_key = :n", n=name)
    fs, path = lake.filesystem(settings, settings.s3.uri("models", name))
    with contextlib.suppress(FileNotFoundError):  # nothing was registered
        fs.delete_dir(path)


def _unused_port() -> int:
    """A port nothing listens on now (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_register_promote_rollback_and_refuse_corruption(stack, settings, unique):
    reg = Registry(settings)
    name = f"it_model_{unique}"
    try:
        v1 = reg.register(name, _artifact(1), params={"lr": 0.1},
                          data_partitions=["raw/trips/pickup_date=2026-11-20"])
        v2 = reg.register(name, _artifact(2), params={"lr": 0.2},
                          data_partitions=["raw/trips/pickup_date=2026-11-21"])
        assert v1.version.startswith(f"{name}:1.0.0-") and v2.version.startswith(f"{name}:1.1.0-")
        assert reg.load(v1).metrics == {"seed": 1}

        reg.promote(name, v1.version)
        reg.promote(name, v2.version)
        assert reg.production(name).version == v2.version
        assert _latest_announcement(settings, name)["version"] == v2.version

        back = reg.rollback(name)
        assert back.version == v1.version and reg.production(name).version == v1.version
        stages = {v.version: v.stage for v in reg.list(name)}
        assert stages == {v1.version: "production", v2.version: "archived"}
        announced = _latest_announcement(settings, name)
        assert announced["version"] == v1.version and announced["sha256"] == v1.sha256
        assert [a["version"] for a in _announcements(settings, name)] == [v1.version, v2.version, v1.version]

        # Overwrite the stored artifact with garbage: loading must refuse it.
        reg._put(v2.artifact_uri, b"not a model")
        with pytest.raises(ArtifactError):
            reg.load(reg.get(name, v2.version))
    finally:
        _forget(settings, name)


def test_concurrent_registrations_in_one_minute_get_distinct_versions(stack, settings, unique):
    name = f"it_conc_{unique}"
    when = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)  # one minute for all: only minor differs
    artifacts = [_artifact(i) for i in range(8)]
    start = threading.Barrier(len(artifacts))
    results: dict[int, object] = {}

    def register(i: int) -> None:
        start.wait()
        try:
            results[i] = Registry(settings).register(name, artifacts[i], {"i": i}, [], when=when)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(artifacts))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        errors = [r for r in results.values() if isinstance(r, Exception)]
        assert not errors and len(results) == 8, errors
        versions = {r.version for r in results.values()}
        assert len(versions) == 8
        assert sorted(parse_version(name, v).minor for v in versions) == list(range(8))
        rows = _sql(settings, "SELECT version, minor, sha256, params_json FROM model_versions WHERE name = :n",
                    n=name)
        assert len(rows) == 8 and {r.version for r in rows} == versions
        assert all(parse_version(name, r.version).minor == r.minor for r in rows)
        # Every row kept its own artifact: none was overwritten by a racing registration.
        reg = Registry(settings)
        for i, mv in results.items():
            assert reg.load(reg.get(name, mv.version)).metrics == {"seed": i}
    finally:
        _forget(settings, name)


def test_register_never_overwrites_a_row_written_outside_the_sequence(stack, settings, unique):
    """A row the sequence does not know of (minor NULL, as one written before migration 005) holds the
    version string the sequence hands out next: the INSERT fails on it and takes the next number."""
    name = f"it_seq_{unique}"
    when = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    taken = make_version(name, 0, when, code_version())
    try:
        _sql(settings, "INSERT INTO model_versions (name, version, stage, artifact_uri, sha256, metrics_json, "
             "params_json, data_partitions, feature_spec, code_version) VALUES (:n, :v, 'archived', "
             "'s3a://lake/tests/none', REPEAT('0', 64), '{}', '{}', '[]', 'test', 'test')", n=name, v=taken)
        mv = Registry(settings).register(name, _artifact(7), {}, [], when=when)
        assert mv.version == make_version(name, 1, when, code_version())
        rows = {r.version: (r.minor, r.sha256) for r in
                _sql(settings, "SELECT version, minor, sha256 FROM model_versions WHERE name = :n", n=name)}
        assert rows == {taken: (None, "0" * 64), mv.version: (1, mv.sha256)}
    finally:
        _forget(settings, name)


def test_promotion_while_kafka_is_down_is_announced_once_by_the_retry(stack, settings, unique, tmp_path):
    """The promotion commits with its announcement pending; the try fails; the retry (the promote part of
    ``evaluate_and_promote``) announces it once, and a private prediction service following the model swaps
    to it. A rollback while Kafka is down is announced by ``lambdaml models announce-pending``."""
    from confluent_kafka.admin import AdminClient

    from batch.pipeline import apply_decision
    from deploy.local.speed import PredictionAPI, service_processes, wait_for_model
    from deploy.local.stack import Stack
    from tests.integration.private_speed import private_settings

    name = f"it_outbox_{unique}"
    s = private_settings(settings, tmp_path / "runtime", unique, port=_unused_port(), front_proxy=False,
                         model_name=name, workers=1, threads=4)
    k.ensure_topics(s)
    # Kafka "down" for this model's announcements only: the shared broker stays up for everyone else.
    nowhere = {"bootstrap_servers": f"127.0.0.1:{_unused_port()}"}
    down = s.model_copy(update={"kafka": s.kafka.model_copy(update=nowhere)})
    assert down.kafka.models_topic == s.kafka.models_topic
    service = Stack(s, catalog=service_processes(s), with_dependencies=False)

    def pending() -> list[str]:
        rows = _sql(settings, "SELECT JSON_VALUE(value, '$.version') AS version FROM model_announcements_outbox "
                    "WHERE topic = :t AND published_at IS NULL ORDER BY id", t=s.kafka.models_topic)
        return [r.version for r in rows]

    def served_within(version: str, timeout: float) -> str:
        api, deadline = PredictionAPI(s), time.monotonic() + timeout
        while (current := api.model()) != version and time.monotonic() < deadline:
            time.sleep(0.5)
        return current

    try:
        reg = Registry(s)
        v1 = reg.register(name, _artifact(11), {"it": 1}, [])
        v2 = reg.register(name, _artifact(12), {"it": 2}, [])
        apply_decision(reg, name, v1.version, promote=True)
        service.up()
        assert wait_for_model(s, 90) == v1.version, PredictionAPI(s).proc.log_tail()

        # The try: the promotion commits, Kafka never acknowledges, the task fails.
        started = time.monotonic()
        with pytest.raises(AnnouncementError, match="announce-pending"):
            apply_decision(Registry(down, announce_timeout_s=3), name, v2.version, promote=True)
        assert time.monotonic() - started < 60
        assert reg.production(name).version == v2.version
        assert pending() == [v2.version]
        assert [a["version"] for a in _announcements(s, name)] == [v1.version]
        assert PredictionAPI(s).model() == v1.version

        # A relay that still cannot reach Kafka leaves the row pending.
        with pytest.raises(AnnouncementError):
            Registry(down, announce_timeout_s=2).publish_pending()
        assert pending() == [v2.version]

        # The retry finds v2 in production already and announces the pending row, once.
        apply_decision(Registry(s), name, v2.version, promote=True)
        assert pending() == []
        assert [a["version"] for a in _announcements(s, name)] == [v1.version, v2.version]
        assert served_within(v2.version, 60) == v2.version
        assert Registry(s).publish_pending() == 0  # nothing left: a second retry sends nothing
        assert [a["version"] for a in _announcements(s, name)] == [v1.version, v2.version]

        # A rollback while Kafka is down, announced later from the command line.
        with pytest.raises(AnnouncementError):
            Registry(down, announce_timeout_s=2).rollback(name)
        assert reg.production(name).version == v1.version and pending() == [v1.version]
        cli = subprocess.run([str(Path(sys.executable).parent / "lambdaml"), "models", "announce-pending"],
                             env=s.child_env(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0 and "announced 1 pending" in cli.stdout, cli.stdout + cli.stderr
        assert pending() == []
        announced = _announcements(s, name)
        assert [a["version"] for a in announced] == [v1.version, v2.version, v1.version]
        assert announced[-1]["sha256"] == v1.sha256 and announced[-1]["stage"] == "production"
        assert served_within(v1.version, 60) == v1.version
    finally:
        service.down()
        AdminClient(k.client_config(s)).delete_topics(list(s.kafka.topics))
        _forget(settings, name)
