"""The cluster profile beside the default stack: the variables that give it its own ports and runtime folder.

Tests and benchmarks use it to bring a cluster stack up next to a running default stack (every port
shifted by ``PORT_SHIFT``), so neither disturbs the other.
"""

from __future__ import annotations

from core.settings import Settings

PORT_SHIFT = 200


def cluster_env(base: Settings) -> dict[str, str]:
    """Variables that turn the default settings into a cluster stack beside the default stack."""
    if base.profile == "cluster":
        return {}
    ports = {
        "KAFKA__PORT": base.kafka.port, "KAFKA__CONTROLLER_PORT": base.kafka.controller_port,
        "MYSQL__PORT": base.mysql.port, "S3__PORT": base.s3.port, "SPARK__THRIFT_PORT": base.spark.thrift_port,
        "AIRFLOW__PORT": base.airflow.port, "AIRFLOW__WORKER_LOG_PORT": base.airflow.worker_log_port,
        "AIRFLOW__TRIGGER_LOG_PORT": base.airflow.trigger_log_port, "SPEED__PORT": base.speed.port,
        "MONITORING__DASHBOARD_PORT": base.monitoring.dashboard_port,
        "CLUSTER__SPARK_MASTER_PORT": base.cluster.spark_master_port,
        "CLUSTER__SPARK_MASTER_WEBUI_PORT": base.cluster.spark_master_webui_port,
        "CLUSTER__SPARK_WORKER_PORT": base.cluster.spark_worker_port, "CLUSTER__RAY_PORT": base.cluster.ray_port,
    }
    env = {f"LAMBDAML_{name}": str(port + PORT_SHIFT) for name, port in ports.items()}
    env.update(LAMBDAML_PROFILE="cluster", LAMBDAML_RUNTIME_DIR=str(base.runtime_dir / "cluster"))
    return env
