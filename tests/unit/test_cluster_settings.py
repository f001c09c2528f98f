"""The cluster profile is settings only: what it derives, and that explicit values win."""

from __future__ import annotations

from pathlib import Path

from core.kafka import topic_configs
from core.settings import Settings


def test_local_profile_is_unchanged():
    s = Settings()
    assert s.profile == "local"
    assert s.spark.master.startswith("local") and s.ray.address is None
    assert s.kafka.bootstrap == f"{s.kafka.host}:{s.kafka.port}"
    assert "min.insync.replicas" not in topic_configs(s, s.kafka.trip_requests_topic)


def test_cluster_profile_derives_the_cluster_addresses():
    s = Settings(profile="cluster")
    assert s.spark.master == f"spark://127.0.0.1:{s.cluster.spark_master_port}"
    assert s.spark.thrift_master == "local[1]"
    assert s.spark.extra_conf["spark.cores.max"] == str(s.cluster.spark_cores_max)
    assert s.kafka.bootstrap.split(",") == [f"{s.kafka.host}:{s.kafka.port + 2 * i}" for i in range(3)]
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (3, 2)
    assert topic_configs(s, s.kafka.trip_requests_topic)["min.insync.replicas"] == "2"
    assert topic_configs(s, s.kafka.models_topic)["cleanup.policy"] == "compact"
    assert s.ray.address == f"{s.bind_host}:{s.cluster.ray_port}"
    # Children get the profile, and derive the same values from it.
    assert s.as_env()["LAMBDAML_PROFILE"] == "cluster"


def test_explicit_values_win_over_the_profile():
    s = Settings(profile="cluster", spark={"master": "spark://elsewhere:7077", "extra_conf": {"spark.cores.max": "8"}},
                 ray={"address": "ray://head:10001"}, kafka={"bootstrap_servers": "b1:9092,b2:9092"})
    assert s.spark.master == "spark://elsewhere:7077"
    assert s.spark.extra_conf["spark.cores.max"] == "8"
    assert s.ray.address == "ray://head:10001"
    assert s.kafka.bootstrap == "b1:9092,b2:9092" and s.kafka.brokers == 1


def test_the_cluster_stack_has_one_service_per_node():
    from deploy.local.services import services_for

    assert [c.name for c in services_for(Settings(profile="cluster"))] == [
        "mariadb", "s3", "kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-1", "spark-worker-2",
        "ray-head", "ray-worker", "thrift", "airflow"]
    assert [c.name for c in services_for(Settings())] == ["mariadb", "s3", "kafka", "ray-head", "thrift", "airflow"]
    for ray in ({"local_head": False}, {"address": "ray://head:10001"}, {"address": "local"}):
        assert "ray-head" not in [c.name for c in services_for(Settings(ray=ray))]


def _ray_args(settings: Settings, name: str) -> list[str]:
    from deploy.local.services import services_for

    (node,) = [c for c in services_for(settings) if c.name == name]
    argv, env = node(settings).command()
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(settings.ray_token_file)
    assert str(Path(__file__).parents[2]) in env["PYTHONPATH"].split(":")
    return argv[argv.index("--") + 1:]


def test_the_local_ray_head_is_sized_by_the_ray_settings(tmp_path):
    args = _ray_args(Settings(ray={"num_cpus": 3}, runtime_dir=tmp_path), "ray-head")
    assert "--head" in args and "--num-cpus=3" in args
    assert f"--port={Settings().cluster.ray_port}" in args
    # Ray's own object store size and GPU count, as a search's own Ray has them, unless set.
    assert not [a for a in args if a.startswith(("--object-store-memory", "--num-gpus"))]
    assert "--num-gpus=1" in _ray_args(Settings(ray={"num_gpus": 1}, runtime_dir=tmp_path), "ray-head")


def test_cluster_ray_nodes_are_sized_by_the_cluster_settings(tmp_path):
    s = Settings(profile="cluster", cluster={"ray_head_cpus": 1, "ray_worker_cpus": 2}, runtime_dir=tmp_path)
    head, worker = _ray_args(s, "ray-head"), _ray_args(s, "ray-worker")
    assert {"--head", "--num-cpus=1", "--num-gpus=0", f"--object-store-memory={s.cluster.ray_object_store_bytes}"} \
        <= set(head)
    assert {f"--address={s.ray_head_address}", "--num-cpus=2", "--num-gpus=0"} <= set(worker)
