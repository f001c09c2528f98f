-- The `lambda` database: the real-time side of the serving layer and the
-- model registry's index. Analysts read it through the read-only account.

CREATE TABLE IF NOT EXISTS model_versions (
  name            VARCHAR(64)  NOT NULL,
  version         VARCHAR(128) NOT NULL,
  stage           ENUM('candidate','production','archived','rejected') NOT NULL DEFAULT 'candidate',
  artifact_uri    VARCHAR(512) NOT NULL,
  sha256          CHAR(64)     NOT NULL,
  metrics_json    JSON         NOT NULL,
  params_json     JSON         NOT NULL,
  data_partitions JSON         NOT NULL,
  feature_spec    VARCHAR(64)  NOT NULL,
  code_version    VARCHAR(64)  NOT NULL,
  created_at      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  promoted_at     TIMESTAMP(3) NULL,
  PRIMARY KEY (name, version),
  KEY ix_model_versions_stage (name, stage, promoted_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS training_runs (
  run_id        VARCHAR(128) NOT NULL PRIMARY KEY,
  dag_run_id    VARCHAR(250) NULL,
  model_name    VARCHAR(64)  NOT NULL,
  model_version VARCHAR(128) NULL,
  status        VARCHAR(16)  NOT NULL,
  trials        INT          NOT NULL DEFAULT 0,
  best_params   JSON         NULL,
  metrics_json  JSON         NULL,
  started_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  finished_at   TIMESTAMP(3) NULL,
  KEY ix_training_runs_model (model_name, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS predictions_recent (
  trip_id              VARCHAR(64)  NOT NULL PRIMARY KEY,
  model_version        VARCHAR(128) NOT NULL,
  pu_location_id       SMALLINT     NOT NULL,
  do_location_id       SMALLINT     NOT NULL,
  pickup_ts            DATETIME(3)  NOT NULL,
  predicted_duration_s DOUBLE       NOT NULL,
  actual_duration_s    DOUBLE       NULL,
  scored_ts            DATETIME(3)  NOT NULL,
  completed_ts         DATETIME(3)  NULL,
  KEY ix_predictions_pickup (pickup_ts),
  KEY ix_predictions_zone_time (pu_location_id, pickup_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS zone_hour_stats (
  pu_location_id        SMALLINT NOT NULL,
  hour_start            DATETIME NOT NULL,
  trips                 INT      NOT NULL,
  sum_predicted_s       DOUBLE   NOT NULL,
  completed             INT      NOT NULL,
  sum_actual_s          DOUBLE   NOT NULL,
  sum_abs_error_s       DOUBLE   NOT NULL,
  updated_at            TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (pu_location_id, hour_start),
  KEY ix_zone_hour_time (hour_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS serving_metrics (
  source     VARCHAR(64)  NOT NULL,
  name       VARCHAR(128) NOT NULL,
  ts         DATETIME(3)  NOT NULL,
  value      DOUBLE       NOT NULL,
  tags_json  JSON         NULL,
  PRIMARY KEY (source, name, ts),
  KEY ix_serving_metrics_time (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS drift_reports (
  report_id     BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  model_version VARCHAR(128) NOT NULL,
  window_start  DATETIME(3)  NOT NULL,
  window_end    DATETIME(3)  NOT NULL,
  feature       VARCHAR(64)  NOT NULL,
  psi           DOUBLE       NOT NULL,
  live_mae_s    DOUBLE       NULL,
  test_mae_s    DOUBLE       NULL,
  breached      BOOLEAN      NOT NULL DEFAULT FALSE,
  created_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_drift_window (model_version, window_start, window_end, feature)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS sync_offsets (
  consumer   VARCHAR(64)  NOT NULL,
  topic      VARCHAR(249) NOT NULL,
  part       INT          NOT NULL,
  next_offset BIGINT      NOT NULL,
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (consumer, topic, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
