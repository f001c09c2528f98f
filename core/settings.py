"""The one typed settings object of the platform.

Every endpoint, port, path, topic and table name lives here. Values come, in
order of precedence, from keyword arguments, the environment (prefix
``LAMBDAML_``, nested fields joined by ``__``, e.g. ``LAMBDAML_KAFKA__PORT``)
and an optional TOML file named by ``LAMBDAML_CONFIG_FILE``. Nothing else in
the code base reads the environment.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "LAMBDAML_"
CONFIG_FILE_VAR = f"{ENV_PREFIX}CONFIG_FILE"


def sql_identifier(value: str) -> str:
    """A database name that SQL text may carry unquoted (names cannot be bound like values)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
        raise ValueError(f"{value!r} is not a plain SQL name: use letters, digits and _ (not first)")
    return value


class WorkloadTopics(NamedTuple):
    """A workload's event topics: requests in, predictions out, outcomes in, dead letters out."""

    requests: str
    predictions: str
    completed: str
    dlq: str


class KafkaSettings(BaseModel):
    """Kafka broker (KRaft) and the platform's topics."""

    host: str = "127.0.0.1"
    port: int = 19092
    controller_port: int = 19093
    bootstrap_servers: str | None = Field(
        default=None, description="External brokers, 'host:port,...'. Unset: the local broker."
    )
    partitions: int = 3
    replication_factor: int = 1
    brokers: int = Field(default=1, ge=1, description="Local brokers; broker i listens on port + 2*i "
                         "(controller on controller_port + 2*i).")
    min_insync_replicas: int = Field(default=1, ge=1, description="min.insync.replicas of the platform's topics.")
    heap: str = "512m"
    trip_requests_topic: str = "trips.requests"
    trip_predictions_topic: str = "trips.predictions"
    trip_completed_topic: str = "trips.completed"
    dead_letter_topic: str = "trips.dlq"
    models_topic: str = "models"
    metrics_topic: str = "metrics"
    batch_events_topic: str = "batch.events"
    workload_topics: dict[str, dict[str, str]] = Field(default_factory=dict, description="Topics of a workload "
                                                       "other than taxi, by role (requests, predictions, completed, "
                                                       "dlq); a role not named: <workload>.<role>. Taxi's are the "
                                                       "trip_* and dead_letter_topic settings.")

    def for_workload(self, name: str) -> WorkloadTopics:
        """The four event topics of a workload: derived from its name (``bike.requests``, ...) unless set in
        ``workload_topics``; the default workload's (taxi's) are the settings above, named before workloads."""
        from core.workload import DEFAULT

        if name == DEFAULT:
            return WorkloadTopics(self.trip_requests_topic, self.trip_predictions_topic, self.trip_completed_topic,
                                  self.dead_letter_topic)
        given = self.workload_topics.get(name, {})
        unknown = set(given) - set(WorkloadTopics._fields)
        if unknown:
            raise ValueError(f"kafka.workload_topics.{name}: unknown roles {sorted(unknown)}; the roles are "
                             f"{', '.join(WorkloadTopics._fields)}")
        return WorkloadTopics(*(given.get(role, f"{name}.{role}") for role in WorkloadTopics._fields))

    def prefixed(self, prefix: str) -> KafkaSettings:
        """A copy with every topic of the platform under ``prefix`` (``it.ab12.trips.requests``, and each other
        workload's ``it.ab12.bike.requests``...), all marked as set: a private set of topics for a test or a
        benchmark, which its teardown can delete without touching anyone else's."""
        from core.workload import DEFAULT, known

        fields = ("trip_requests_topic", "trip_predictions_topic", "trip_completed_topic", "dead_letter_topic",
                  "models_topic", "metrics_topic", "batch_events_topic")
        update: dict[str, Any] = {f: f"{prefix}{getattr(self, f)}" for f in fields}
        update["workload_topics"] = {name: {role: f"{prefix}{topic}" for role, topic in
                                            self.for_workload(name)._asdict().items()}
                                     for name in known() if name != DEFAULT}
        out = self.model_copy(update=update)
        out.model_fields_set.update(update)
        return out

    @property
    def external(self) -> bool:
        return self.bootstrap_servers is not None

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or ",".join(f"{self.host}:{self.broker_port(i)}" for i in range(self.brokers))

    def broker_port(self, index: int) -> int:
        """Client port of local broker ``index`` (0-based)."""
        return self.port + 2 * index

    def broker_controller_port(self, index: int) -> int:
        return self.controller_port + 2 * index

    @property
    def compacted_topics(self) -> set[str]:
        return {self.models_topic}

    @property
    def topics(self) -> list[str]:
        from core.workload import DEFAULT, known

        others = [t for name in known() if name != DEFAULT for t in self.for_workload(name)]
        return [
            self.trip_requests_topic,
            self.trip_predictions_topic,
            self.trip_completed_topic,
            self.dead_letter_topic,
            self.models_topic,
            self.metrics_topic,
            self.batch_events_topic,
            *others,
        ]


class MySQLSettings(BaseModel):
    """MariaDB/MySQL: the real-time views, the registry index and the Hive metastore."""

    url: str | None = Field(
        default=None,
        description="External server as a SQLAlchemy URL (mysql+pymysql://user:pw@host:port/db). "
        "Unset: the local MariaDB.",
    )
    host: str = "127.0.0.1"
    port: int = 13306
    database: str = "lambda"
    metastore_database: str = "metastore"
    user: str = "lambdaml"
    password: SecretStr = SecretStr("lambdaml-dev")
    analyst_user: str = Field(default="analyst", description="Read-only analyst: SELECT on `database` in MySQL, "
                              "and the login of the Hive tier (the Thrift Server).")
    analyst_password: SecretStr = SecretStr("analyst-dev")
    metastore_reader_user: str = Field(
        default="hive_reader", description="The Thrift Server's metastore login: SELECT only on "
        "`metastore_database` (the local stack creates it; create it yourself on an external server).")
    metastore_reader_password: SecretStr = SecretStr("hive-reader-dev")
    buffer_pool: str = "256M"

    @field_validator("database", "metastore_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return sql_identifier(value)

    @property
    def external(self) -> bool:
        return self.url is not None

    def sqlalchemy_url(self, *, analyst: bool = False) -> str:
        """SQLAlchemy URL of the ``lambda`` database, as the app or the analyst."""
        from sqlalchemy.engine import make_url

        if analyst:
            base = make_url(self.url) if self.url else make_url(f"mysql+pymysql://{self.host}:{self.port}")
            return base.set(
                username=self.analyst_user,
                password=self.analyst_password.get_secret_value(),
                database=self.database,
            ).render_as_string(hide_password=False)
        if self.url:
            return self.url
        return (
            make_url(f"mysql+pymysql://{self.host}:{self.port}")
            .set(username=self.user, password=self.password.get_secret_value(), database=self.database)
            .render_as_string(hide_password=False)
        )

    def server_host_port(self) -> tuple[str, int]:
        if self.url:
            from sqlalchemy.engine import make_url

            u = make_url(self.url)
            return u.host or "127.0.0.1", u.port or 3306
        return self.host, self.port


class S3Settings(BaseModel):
    """The S3-compatible object store that holds the lake."""

    endpoint_url: str | None = Field(
        default=None, description="External S3 endpoint (http://host:port). Unset: the local S3 server (versitygw)."
    )
    host: str = "127.0.0.1"
    port: int = 19000
    bucket: str = "lake"
    region: str = "us-east-1"
    access_key: str = "lambdaml"
    secret_key: SecretStr = SecretStr("lambdaml-secret")
    reader_access_key: str = Field(
        default="lambdaml-reader", description="The Thrift Server's S3 key: the bucket's policy lets it only read "
        "(the local stack creates the account and the policy; on an external S3, give it a read-only key).")
    reader_secret_key: SecretStr = SecretStr("lambdaml-reader-secret")
    retry_limit: int = Field(
        default=7, ge=0,
        description="S3A retries of a request that failed to connect (fs.s3a.retry.limit), with exponential backoff. "
                    "With the defaults a Spark step rides out about 5 minutes without S3, then fails and Airflow "
                    "retries its task; lower it to fail sooner.")
    sdk_attempts: int = Field(
        default=5, ge=0, description="AWS SDK retries inside each S3A attempt (fs.s3a.attempts.maximum).")

    @property
    def external(self) -> bool:
        return self.endpoint_url is not None

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"http://{self.host}:{self.port}"

    def uri(self, *parts: str) -> str:
        """``s3a://<bucket>/<parts...>``: the form Spark reads and writes."""
        key = "/".join(p.strip("/") for p in parts if p)
        return f"s3a://{self.bucket}/{key}" if key else f"s3a://{self.bucket}"


class SparkSettings(BaseModel):
    """Spark sessions, the shared Hive metastore and the Thrift Server."""

    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 4
    warehouse_dir: str | None = Field(
        default=None, description="Hive warehouse. Unset: s3a://<bucket>/warehouse."
    )
    hive_database: str = "lake"
    thrift_host: str = "127.0.0.1"
    thrift_port: int = 10009
    thrift_external: bool = Field(
        default=False, description="True: an existing Thrift Server/HiveServer2 at thrift_host:thrift_port."
    )
    thrift_driver_memory: str = "1g"
    thrift_master: str | None = Field(
        default=None, description="Master of the Thrift Server's own Spark application. Unset: `master`.")
    ui_enabled: bool = False
    extra_conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("hive_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return sql_identifier(value)


class AirflowSettings(BaseModel):
    """Airflow 3 standalone: API server and UI, scheduler, DAG processor, triggerer."""

    host: str = "127.0.0.1"
    port: int = 18080
    admin_user: str = "admin"
    admin_password: SecretStr = SecretStr("admin")
    worker_log_port: int = 18793
    trigger_log_port: int = 18794
    dags_folder: Path = PROJECT_ROOT / "dags"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class RaySettings(BaseModel):
    """Ray Tune: where it runs and how big the search is (small by default, for CI and laptops)."""

    address: str | None = Field(default=None, description="Ray cluster address a search joins. Unset: the local "
                                "stack's Ray head (`ray-head`) when it answers, else a Ray started for the search "
                                "alone; `local`: always a Ray of the search's own.")
    local_head: bool = Field(default=True, description="The local stack runs a Ray head that searches join, so none "
                             "pays for starting and stopping a Ray (about 3 s on 2 cores). Off: one Ray a search.")
    num_cpus: int = Field(default=2, description="CPUs of the local Ray (the stack's head, or a search's own): trials "
                          "at once, one CPU each.")
    num_gpus: int | None = Field(default=None, description="GPUs of the local Ray; unset: the ones torch sees.")
    num_samples: int = Field(default=4, description="Trials in the search (try 16-32 for real runs).")
    max_epochs: int = Field(default=8, description="Epochs per trial and for the final fit (try 30).")
    grace_period: int = 2


def _default_model_name() -> str:
    from core.workload import default

    return default().model_name


class SpeedSettings(BaseModel):
    """The speed layer: the prediction service (gunicorn + Flask) and the streaming job."""

    host: str = "127.0.0.1"
    port: int = 18000
    model_name: str = Field(default_factory=lambda: _default_model_name(), description="The registered model "
                            "served for the default workload (taxi) at /v1/predict and /v1/taxi/predict; default: the "
                            "one the workload declares. Another workload serves its own.")
    workloads: list[str] = Field(default_factory=list, description="The workloads the service serves, each at "
                                 "/v1/<workload>/predict; empty: every workload folder.")
    workers: int = Field(default=2, ge=1, description="gunicorn worker processes, one model copy each.")
    threads: int = Field(default=16, ge=1, description="Request threads per worker; they share one micro-batcher.")
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per worker; numpy's BLAS "
                               "threads too.")
    device: str = Field(default="cpu", description="Inference device: cpu, or cuda (initialised after fork).")
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_trips: int = Field(default=1000, ge=1, description="Largest batch one request may carry (413 above).")
    micro_batching: bool = True
    batch_max_size: int = Field(default=512, ge=1, description="Most trips merged into one forward pass.")
    batch_max_wait_ms: float = Field(default=0.0, ge=0, description="Longest a batch stays open for requests "
                                     "the worker is already reading; a lone request never waits. 0: a batch takes "
                                     "what queued during the last forward pass and no more (on two cores, "
                                     "waiting 2 ms cost more than the merged passes saved).")
    api_key: SecretStr | None = Field(default=None, description="If set, requests need the X-API-Key header.")
    request_timeout_s: float = 10.0
    max_in_flight: int = Field(default=12, ge=1, description="Prediction requests one worker works on at once; "
                               "more get 503 with Retry-After. Keep it under `threads`: the spare threads answer "
                               "the refusals at once.")
    max_pending_trips: int = Field(default=4096, ge=1, description="Trips one worker's micro-batcher may hold "
                                   "(waiting or being scored); more get 503 with Retry-After. At least "
                                   "max_batch_trips.")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After (seconds) sent with a 503 for overload.")
    stream_trigger: str = Field(default="processingTime:100 milliseconds",
                                description="processingTime:<interval>, availableNow, or realTime:<interval>.")
    stream_checkpoint: str | None = Field(default=None,
                                          description="Checkpoint location. Unset: <runtime_dir>/checkpoints/speed.")
    stream_http_batch: int = Field(default=500, ge=1, description="Trips per call to the prediction service.")
    stream_max_offsets_per_trigger: int = 50_000
    stream_tasks: int = Field(default=2, ge=0, description="Tasks a micro-batch runs in (Spark coalesce of the "
                              "Kafka partitions), best at the stream's cores; 0: one a partition. Ignored in "
                              "real-time mode, whose tasks never end.")
    stream_fetch_max_wait_ms: int = Field(default=10, ge=0, description="Kafka fetch.max.wait.ms of the "
                                          "stream's consumers: how long a prefetch may hold up the next batch.")
    stream_progress_interval_ms: int = Field(default=1000, ge=0, description="How often the stream writes its "
                                             "offset and commit logs (asynchronously, off the latency path).")
    stream_retry_max_s: float = Field(default=300.0, description="Longest the stream retries an unreachable service.")
    jvm_options: str = Field(
        default="-XX:TieredStopAtLevel=1", description="Java options of the speed layer's Spark applications (the "
        "scoring job and the lake sink; their executors too on a cluster), after any in spark.extra_conf. The default "
        "compiles with C1 only: the drivers' hot code is Spark planning a small batch several times a second, and "
        "C2 recompiling it took up to 70% of a core for minutes after each start on 2 cores. Empty: the JVM's own.")
    dead_letter_payload_bytes: int = Field(
        default=16_384, ge=64, description="Bytes of a bad event's payload its dead letter keeps; longer ones are cut, "
        "with the payload's byte length and sha256 beside it (JSON escaping can grow a byte to 6).")
    stream_record_max_bytes: int = Field(
        default=524_288, ge=4096, description="Largest value the stream writes to Kafka. A record over it is replaced "
        "by a small dead letter (`record_too_large`), so no input can fail a batch. Keep it under the sink's "
        "max.request.size (1 MiB).")
    lake_sink: bool = Field(default=True, description="Run the lake sink (every event topic into the lake's "
                            "master log, exactly once): `lambdaml speed up` starts it as speed-lake-sink.")
    lake_sink_nice: int = Field(default=10, ge=0, le=19, description="Niceness of the lake sink's process (and its "
                                "JVM): the scoring job gets the cores first when both want them.")
    lake_sink_master: str = Field(default="local[1]", description="Spark master of the lake sink: local by default, "
                                  "so that a never-ending application holds no cluster cores (one task a batch).")
    lake_sink_trigger: str = Field(default="processingTime:30 seconds",
                                   description="Trigger of the lake sink: few, larger files, off the scoring path.")
    lake_sink_max_offsets_per_trigger: int = Field(default=500_000, ge=1)
    lake_sink_checkpoint: str | None = Field(default=None, description="Checkpoint of the lake sink. Unset: "
                                             "<runtime_dir>/checkpoints/lake-sink.")
    lake_sink_path: str | None = Field(default=None, description="The master log of events. Unset: "
                                       "s3a://<bucket>/master/events. One writer per path: the file sink's own log "
                                       "lives there.")
    stream_restart_max: int = Field(default=0, ge=0, description="Restarts of a failed streaming query before the "
                                    "job gives up (0: never gives up).")
    stream_restart_backoff_s: float = Field(default=2.0, gt=0, description="First wait before a failed query is "
                                            "restarted; it doubles on each failure in a row, up to 60 s.")
    front_proxy: bool = Field(
        default=True, description="Serve `port` through haproxy in front of gunicorn (on `app_port`). It lets at most "
        "workers x threads requests into gunicorn, queues `front_max_queue` more for up to `front_queue_timeout_ms`, "
        "and answers 503 with Retry-After past that, so overload never turns into client timeouts.")
    app_port: int | None = Field(default=None, description="gunicorn's own port behind the front. Unset: `port` + 1.")
    front_max_queue: int = Field(default=128, ge=0, description="Requests the front holds waiting for gunicorn.")
    front_queue_timeout_ms: int = Field(default=1000, ge=1, description="Longest a request waits in the front's queue.")

    @property
    def url(self) -> str:
        """The service's public address: the front when there is one, else gunicorn."""
        return f"http://{self.host}:{self.port}"

    @property
    def gunicorn_port(self) -> int:
        if not self.front_proxy:
            return self.port
        return self.app_port if self.app_port is not None else self.port + 1

    @property
    def app_url(self) -> str:
        """gunicorn itself, for the platform's own callers (the streaming job, readiness checks)."""
        return f"http://{self.host}:{self.gunicorn_port}"

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> SpeedSettings:
        if self.max_pending_trips < self.max_batch_trips:
            raise ValueError(f"max_pending_trips ({self.max_pending_trips}) must be at least max_batch_trips "
                             f"({self.max_batch_trips}), or a full batch is always refused")
        return self


class MonitoringSettings(BaseModel):
    """Drift of live traffic against the training data, and live error against the test error."""

    window_minutes: int = Field(default=60, ge=1, description="Live window that each check looks back over.")
    psi_threshold: float = Field(default=0.2, description="PSI of any feature at or above this is drift.")
    mae_ratio_threshold: float = Field(default=1.5, description="Live MAE / test MAE at or above this is drift.")
    min_rows: int = Field(default=300, description="Fewer live predictions than this: no verdict on PSI.")
    min_completed: int = Field(default=100, description="Fewer completed trips than this: no verdict on MAE.")
    dashboard_port: int = Field(default=18050, description="Port of the dashboard (started by `lambdaml speed up`).")
    reconcile_at: str = Field(default="07:45", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                              description="UTC time of the monitoring DAG's daily run that also reconciles Kafka, "
                              "the master log, Hive and MySQL (a Spark job), after hive_archive's run at 07:00.")
    reconcile_days: int = Field(default=2, ge=1, description="Days the daily reconciliation looks at (today "
                                "included).")


class ClusterSettings(BaseModel):
    """The `cluster` profile: a Spark standalone cluster, a Kafka cluster and a Ray cluster on this machine."""

    spark_master_port: int = 17077
    spark_master_webui_port: int = 17080
    spark_workers: int = Field(default=2, ge=1, description="Spark standalone workers.")
    spark_worker_port: int = Field(default=17090, description="Worker i listens on this + 2*i (web UI on + 2*i + 1).")
    spark_worker_cores: int = Field(default=2, ge=1, description="Cores each worker offers (two applications, "
                                    "e.g. the stream and a batch job, then fit side by side).")
    spark_worker_memory: str = "3g"
    spark_executor_cores: int = 1
    spark_executor_memory: str = "1g"
    spark_cores_max: int = Field(default=2, ge=1, description="Most cores one application takes from the cluster.")
    kafka_brokers: int = Field(default=3, ge=1)
    kafka_replication_factor: int = 3
    kafka_min_insync_replicas: int = 2
    kafka_heap: str = "384m"
    ray_port: int = Field(default=16379, description="Ray head (GCS) port, of the local stack's head too; the other "
                          "Ray ports are this + 1..+17, "
                          "worker processes this + 100..+299.")
    ray_head_cpus: int = 1
    ray_worker_cpus: int = 1
    ray_object_store_bytes: int = 300_000_000

    @property
    def spark_master_url(self) -> str:
        return f"spark://127.0.0.1:{self.spark_master_port}"


class BatchSettings(BaseModel):
    """The batch layer's time-ordered split and its floor."""

    train_share: float = Field(default=0.70, gt=0, lt=1, description="Share of the trips, earliest first, that "
                               "trains; the cut is a quantile of pickup time over the trips present.")
    val_share: float = Field(default=0.15, gt=0, lt=1, description="Share after it that validates; the rest tests.")
    min_split_rows: int = Field(default=30, ge=1, description="Fewest trips any split may hold: preprocess refuses "
                                "the run before tuning below it (raise it for real runs, e.g. 1000).")
    cpu_nice: int = Field(default=10, ge=0, le=19, description="Niceness the batch_training tasks run at, with "
                          "everything they start (Spark JVM and Python workers, local Ray): while a training runs, "
                          "the speed layer (at 0) gets the cores first. 0: no change.")

    @model_validator(mode="after")
    def _test_share_left(self) -> BatchSettings:
        if self.train_share + self.val_share >= 1:
            raise ValueError(f"train_share + val_share ({self.train_share + self.val_share:g}) must leave a test "
                             "share (below 1)")
        return self


class ServingSettings(BaseModel):
    """The serving layer: the Hive archive and MySQL retention."""

    retention_days: int = Field(default=7, ge=1, description="Days MySQL keeps real-time rows of a day once it "
                                                              "is archived in Hive (older archived days are deleted).")
    master_wait_s: float = Field(default=600.0, ge=0, description="Longest the Hive batch views wait for the lake sink "
                                 "to write to the master log every record Kafka holds of a workload's topics.")
    workload_tables: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Names of a workload's MySQL real-time views, by workload and role "
        "(predictions, outcomes, hourly), over those it declares (core.views): "
        '{"bike": {"hourly": "bike_station_hours"}}.')


class Settings(BaseSettings):
    """Every setting of the platform. See README, section "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    profile: Literal["local", "cluster"] = Field(
        default="local",
        description="local: single-process services. cluster: a Spark standalone cluster, a Kafka cluster and a "
        "Ray cluster on this machine (the `cluster` section sizes them); only settings change.",
    )
    runtime_dir: Path = Field(
        default=PROJECT_ROOT / ".runtime",
        description="All local-stack state: data, logs, pid files, checkpoints.",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "lambdaml",
        description="Downloads kept between clones: resolved jars.",
    )
    bind_host: str = "127.0.0.1"
    java_home: Path | None = None
    kafka: KafkaSettings = KafkaSettings()
    mysql: MySQLSettings = MySQLSettings()
    s3: S3Settings = S3Settings()
    spark: SparkSettings = SparkSettings()
    airflow: AirflowSettings = AirflowSettings()
    ray: RaySettings = RaySettings()
    speed: SpeedSettings = SpeedSettings()
    serving: ServingSettings = ServingSettings()
    batch: BatchSettings = BatchSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    cluster: ClusterSettings = ClusterSettings()

    @field_validator("runtime_dir", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _derive_profile(self) -> Settings:
        """The cluster profile as plain settings; a value set explicitly always wins."""
        if self.profile != "cluster":
            return self
        c, k, sp, r = self.cluster, self.kafka, self.spark, self.ray

        def default(section: BaseModel, name: str, value: Any) -> None:
            if name not in section.model_fields_set:
                setattr(section, name, value)

        default(sp, "master", c.spark_master_url)
        default(sp, "thrift_master", "local[1]")  # analyst queries must not hold cluster cores
        for key, value in {
            "spark.executor.cores": str(c.spark_executor_cores),
            "spark.executor.memory": c.spark_executor_memory,
            "spark.cores.max": str(c.spark_cores_max),
            "spark.driver.host": self.bind_host,
            "spark.driver.bindAddress": self.bind_host,
        }.items():
            sp.extra_conf.setdefault(key, value)
        if not k.external:
            default(k, "brokers", c.kafka_brokers)
            default(k, "heap", c.kafka_heap)
        default(k, "replication_factor", c.kafka_replication_factor)
        default(k, "min_insync_replicas", c.kafka_min_insync_replicas)
        default(r, "address", self.ray_head_address)
        return self

    @property
    def ray_token_file(self) -> Path:
        """The token every Ray the platform starts requires (``core.ray_auth``)."""
        return self.runtime_dir / "ray-auth" / "token"

    @property
    def ray_head_address(self) -> str:
        """The GCS address of the Ray head the stack runs (``ray-head``, in either profile)."""
        return f"{self.bind_host}:{self.cluster.ray_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VAR)
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise ValueError(f"{CONFIG_FILE_VAR}={config_file}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # Derived paths: one place so that every layer agrees on them.
    @property
    def jar_dir(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def log_dir(self) -> Path:
        return self.runtime_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.runtime_dir / "pids"

    @property
    def stream_checkpoint(self) -> str:
        return self.speed.stream_checkpoint or str(self.runtime_dir / "checkpoints" / "speed")

    @property
    def lake_sink_checkpoint(self) -> str:
        return self.speed.lake_sink_checkpoint or str(self.runtime_dir / "checkpoints" / "lake-sink")

    @property
    def master_events_uri(self) -> str:
        """The master log of events: ``<bucket>/master/events/topic=…/date=…/`` (Parquet, append-only)."""
        return self.speed.lake_sink_path or self.s3.uri("master", "events")

    @property
    def warehouse_dir(self) -> str:
        return self.spark.warehouse_dir or self.s3.uri("warehouse")

    def child_env(self, **extra: str) -> dict[str, str]:
        """Environment for child processes: the parent's, plus these settings.

        Children (Airflow tasks, gunicorn, Spark) re-read the settings from the
        same variables, so the whole process tree agrees on one configuration.
        """
        env = dict(os.environ)
        env.update(self.as_env())
        if self.java_home:
            env["JAVA_HOME"] = str(self.java_home)
        env.update(extra)
        return env

    def as_env(self) -> dict[str, str]:
        """These settings as ``LAMBDAML_*`` variables (only the ones set explicitly)."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, BaseModel):
                for name in value.model_fields_set:
                    walk(f"{prefix}{name.upper()}__", getattr(value, name))
                return
            key = prefix[:-2]
            if isinstance(value, SecretStr):
                out[key] = value.get_secret_value()
            elif isinstance(value, dict):
                import json

                out[key] = json.dumps(value)
            elif value is not None:
                out[key] = str(value)

        for name in self.model_fields_set:
            walk(f"{ENV_PREFIX}{name.upper()}__", getattr(self, name))
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
