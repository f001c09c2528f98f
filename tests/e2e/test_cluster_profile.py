"""The cluster profile end to end: the same DAGs and streaming job, unchanged, on a Spark standalone cluster
(master + 2 workers), a 3-broker Kafka cluster and a Ray cluster (head + worker), and a broker lost during
live replay without losing an acknowledged event.

The cluster stack runs beside the default one: its own runtime folder and every port shifted
(``deploy.local.cluster_env``). With ``LAMBDAML_PROFILE=cluster`` already in the environment, the configured
cluster stack is used as it is. Services the test starts are stopped at the end; running ones are reused and left alone.
Tiny data and a tiny search keep it inside a few minutes of a 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
import urllib.request

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from sqlalchemy import bindparam, text

from core import kafka as k
from core.settings import Settings, get_settings
from deploy.local.cluster_env import cluster_env

pytestmark = pytest.mark.cluster

START, DAYS, ROWS = dt.date(2026, 9, 1), 3, 1500
END = START + dt.timedelta(days=DAYS - 1)
REPLAY_COUNT, REPLAY_RATE, MALFORMED_SHARE = 600, 40.0, 0.02
TINY = {"LAMBDAML_RAY__NUM_SAMPLES": "2", "LAMBDAML_RAY__MAX_EPOCHS": "3", "LAMBDAML_RAY__GRACE_PERIOD": "1"}




def _progress(msg: str) -> None:
    print(msg, flush=True)


@pytest.fixture(scope="module")
def cluster():
    """The cluster stack's settings, for this process and (by environment) every child it starts."""
    from deploy.local.speed import SPEED_SERVICES
    from deploy.local.stack import Stack

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**cluster_env(get_settings()), **TINY}.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        s = get_settings()
        assert s.profile == "cluster"
        stack = Stack(s, echo=_progress)
        already = {x.name for x in stack.status() if x.healthy}
        speed_already = {x.name for x in Stack(s, catalog=SPEED_SERVICES).status() if x.healthy}
        try:
            stack.up()
            yield s
        finally:
            speed_started = [x.name for x in Stack(s, catalog=SPEED_SERVICES).services if x.name not in speed_already]
            if speed_started:
                Stack(s, only=speed_started, with_dependencies=False, catalog=SPEED_SERVICES).down()
            started = [x.name for x in stack.services if x.name not in already]
            if started:
                Stack(s, only=started, with_dependencies=False).down()
            get_settings.cache_clear()
    get_settings.cache_clear()


def _master(s: Settings) -> dict:
    url = f"http://127.0.0.1:{s.cluster.spark_master_webui_port}/json/"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _apps_since(s: Settings, since_ms: int) -> list[dict]:
    m = _master(s)
    return [a for a in m.get("activeapps", []) + m.get("completedapps", []) if a["starttime"] >= since_ms]


def test_the_clusters_are_multi_node(cluster):
    s = cluster
    assert s.spark.master.startswith("spark://") and s.ray.address and len(s.kafka.bootstrap.split(",")) == 3
    workers = [w for w in _master(s)["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == s.cluster.spark_workers == 2
    admin = AdminClient(k.client_config(s))
    meta = admin.list_topics(timeout=10)
    assert len(meta.brokers) == 3
    for topic in s.kafka.topics:
        assert all(len(p.replicas) == 3 for p in meta.topics[topic].partitions.values()), topic
    (configs,) = admin.describe_configs([ConfigResource("topic", s.kafka.trip_requests_topic)]).values()
    assert configs.result()["min.insync.replicas"].value == "2"
    from deploy.local.services import RayNode

    assert RayNode(s).nodes() == 2


@pytest.fixture(scope="module")
def trained(cluster):
    from deploy.local.airflow_api import AirflowAPI
    from workloads.taxi import generate

    s = cluster
    generate.generate(s, START, DAYS, ROWS, seed=23, dirty_share=0.02, echo=lambda _: None)
    since_ms = int(time.time() * 1000)
    api = AirflowAPI(s)
    # About 15 minutes on a shared 2-core machine: each Spark step waits for its executors to start.
    run = api.run_dag("batch_training", {"end_date": END.isoformat(), "days_back": DAYS}, timeout=1800,
                      progress=lambda r: None)
    return {"api": api, "run": run, "since_ms": since_ms}


def test_batch_training_runs_unchanged_on_the_spark_and_ray_clusters(trained, cluster):
    from sqlalchemy import text as sql

    from core.db import engine

    run = trained["run"]
    assert run["state"] == "success", trained["api"].failed_tasks("batch_training", run["dag_run_id"])
    # The Spark steps ran as applications of the standalone cluster, each with executors on the workers.
    apps = _apps_since(cluster, trained["since_ms"])
    assert apps, "no Spark application ran on the standalone master"
    eng = engine(cluster)
    with eng.connect() as conn:
        row = conn.execute(sql("SELECT model_version FROM training_runs WHERE run_id = :r"),
                           {"r": run["dag_run_id"]}).one()
    eng.dispose()
    assert row.model_version


def _kafka_records(s: Settings, topic: str, since_ms: int) -> list:
    consumer = k.consumer(s, f"e2e-cluster-{topic}-{time.monotonic_ns()}")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in meta.partitions], timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
        todo = {tp.partition for tp in parts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in parts if tp.partition in todo])
        out, deadline = [], time.monotonic() + 90
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            out.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
        assert not todo, f"{topic}: partitions {todo} not read to their end"
        return out
    finally:
        consumer.close()


def _wait_for_stream(s: Settings, timeout: float = 300, quiet_s: float = 10.0) -> None:
    from deploy.local.speed import StreamJob

    job = StreamJob(s)
    deadline = time.monotonic() + timeout
    batches, since = job.status().get("batches"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = job.status().get("batches")
        if now != batches:
            batches, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def _production_model(s: Settings, trained: dict) -> str:
    """The version the speed layer will serve: the run's own if its gate promoted it, else the operator promotes it.

    The cluster run trains a few steps on 3,000 rows (3 epochs), so whether it beats the baseline by the
    gate's margin is a matter of the sampled learning rate; its quality is not what this module tests."""
    from sqlalchemy import text as sql

    from core.db import engine
    from core.registry import Registry
    from core.workload import default

    model_name = default().model_name

    registry = Registry(s)
    current = registry.production(model_name)
    if current is not None:
        return current.version
    eng = engine(s)
    with eng.connect() as conn:
        version = conn.execute(sql("SELECT model_version FROM training_runs WHERE run_id = :r"),
                               {"r": trained["run"]["dag_run_id"]}).scalar_one()
    eng.dispose()
    _progress(f"the gate kept {version} out of production; promoting it as an operator would")
    return registry.promote(model_name, version).version


@pytest.fixture(scope="module")
def replayed(cluster, trained):
    """Live replay with the stream running; one broker is killed (by its pid) half-way through."""
    from batch.replay import replay
    from deploy.local.services import services_for
    from deploy.local.speed import SPEED_SERVICES, wait_for_model
    from deploy.local.stack import Stack

    s = cluster
    _production_model(s, trained)
    Stack(s, catalog=SPEED_SERVICES, echo=_progress).up()
    assert wait_for_model(s, timeout=120), "the prediction service loaded no model"
    since_ms = int(time.time() * 1000) - 1000
    broker = next(cls(s) for cls in services_for(s) if cls.name == "kafka-3")
    pid = broker.proc.pid()
    assert pid is not None
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(summary=replay(
        s, END, REPLAY_COUNT, REPLAY_RATE, seed=41, time_scale=600, malformed_share=MALFORMED_SHARE,
        echo=_progress)))
    worker.start()
    time.sleep(REPLAY_COUNT / REPLAY_RATE / 2)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker.join(timeout=600)
    assert "summary" in result, "replay did not finish (or failed) after a broker was lost"
    _wait_for_stream(s)
    return {"summary": result["summary"], "since_ms": since_ms, "broker": broker, "killed_at": killed_at}


def test_no_acknowledged_event_is_lost_when_a_broker_dies(replayed, cluster):
    from deploy.local.speed import StreamJob

    s, summary = cluster, replayed["summary"]
    assert replayed["broker"].proc.pid() is None  # the broker really is gone
    requests = _kafka_records(s, s.kafka.trip_requests_topic, replayed["since_ms"])
    # Every acknowledged request is in the topic once (idempotent producer, acks=all, min.insync.replicas=2).
    assert len(requests) == summary.requests + summary.malformed
    # The stream's first batch on a fresh cluster can take minutes (executors start, a leader moves).
    deadline = time.monotonic() + 600
    while True:
        predicted = {m.key().decode()
                     for m in _kafka_records(s, s.kafka.trip_predictions_topic, replayed["since_ms"])}
        dead = {(v["source_partition"], v["source_offset"])
                for v in (json.loads(m.value())
                          for m in _kafka_records(s, s.kafka.dead_letter_topic, replayed["since_ms"]))
                if v["source_topic"] == s.kafka.trip_requests_topic}
        missing = [(m.partition(), m.offset(), m.key()) for m in requests
                   if m.key().decode() not in predicted and (m.partition(), m.offset()) not in dead]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert not missing, f"{len(missing)} acknowledged requests with neither a prediction nor a dead letter"
    assert len(dead) >= summary.malformed > 0
    # The stream kept running through the loss and went on with batches after it.
    assert StreamJob(s).proc.pid() is not None and StreamJob(s).status().get("state") in ("started", "running")


def test_serving_dags_run_unchanged_on_the_cluster(replayed, trained, cluster):
    from core.db import engine
    from deploy.local.stack import Stack

    s, api = cluster, trained["api"]
    Stack(s, only=["kafka-3"], echo=_progress).up()  # the lost broker rejoins
    run = api.run_dag("serving_sync", timeout=600)
    assert run["state"] == "success", api.failed_tasks("serving_sync", run["dag_run_id"])
    requests = _kafka_records(s, s.kafka.trip_requests_topic, replayed["since_ms"])
    ids = sorted({m.key().decode() for m in requests})
    eng = engine(s)
    with eng.connect() as conn:
        synced = conn.execute(text("SELECT COUNT(*) FROM predictions_recent WHERE trip_id IN :ids")
                              .bindparams(bindparam("ids", expanding=True)), {"ids": ids}).scalar()
    eng.dispose()
    assert synced == replayed["summary"].requests
    since_ms = int(time.time() * 1000)
    run = api.run_dag("hive_archive", {"day": END.isoformat()}, timeout=900)
    assert run["state"] == "success", api.failed_tasks("hive_archive", run["dag_run_id"])
    assert _apps_since(s, since_ms), "hive_archive ran no Spark application on the standalone master"
