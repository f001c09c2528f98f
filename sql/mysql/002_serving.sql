-- The serving layer's real-time side: predictions carry their request inputs
-- (for live views and drift), outcomes arrive separately, and the batch
-- coverage watermark says up to which day Hive holds the archived view.

ALTER TABLE predictions_recent
  ADD COLUMN passenger_count SMALLINT NULL AFTER do_location_id,
  ADD COLUMN trip_distance   DOUBLE   NOT NULL DEFAULT 0 AFTER passenger_count,
  ADD COLUMN event_ts        DATETIME(3) NULL AFTER scored_ts,
  ADD KEY ix_predictions_scored (scored_ts),
  ADD KEY ix_predictions_model_time (model_version, pickup_ts);

CREATE TABLE IF NOT EXISTS trip_outcomes (
  trip_id     VARCHAR(64) NOT NULL PRIMARY KEY,
  dropoff_ts  DATETIME(3) NOT NULL,
  duration_s  DOUBLE      NOT NULL,
  synced_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY ix_outcomes_dropoff (dropoff_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS batch_coverage (
  view_name     VARCHAR(64) NOT NULL PRIMARY KEY,
  covered_until DATE        NOT NULL COMMENT 'Hive holds every day before this one; MySQL answers from it on',
  updated_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
