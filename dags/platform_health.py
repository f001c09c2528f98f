"""Checks that every service of the platform answers a real client call.

Run it from the Airflow UI after deploying, or on its hourly schedule, to see at
a glance which backing service (Kafka, MySQL, S3, Ray, Hive/Thrift) is down, and whether the streaming job's
query failed (it restarts itself with backoff; the task says the last failure). It also
relays model announcements left pending in the registry's outbox by a promotion
whose process died, or whose Kafka was down, and that nothing retried since.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

SERVICES = ["mariadb", "s3", "kafka", "ray-head", "thrift", "speed-stream", "speed-lake-sink"]


@dag(
    schedule="@hourly",
    catchup=False,
    tags=["platform"],
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
)
def platform_health():
    @task(map_index_template="{{ task.op_kwargs['service'] }}")
    def check_service(service: str) -> str:
        from serving.health import check_service as check

        return check(service)

    @task
    def announce_pending_models() -> int:
        from core.registry import Registry
        from core.settings import get_settings

        return Registry(get_settings()).publish_pending()

    check_service.expand(service=SERVICES)
    announce_pending_models()


platform_health()
