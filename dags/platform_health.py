"""Checks that every service of the platform answers a real client call.

Run it from the Airflow UI after deploying, or on its hourly schedule, to see at
a glance which backing service (Kafka, MySQL, S3, Hive/Thrift) is down.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

SERVICES = ["mariadb", "s3", "kafka", "thrift"]


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

    check_service.expand(service=SERVICES)


platform_health()
