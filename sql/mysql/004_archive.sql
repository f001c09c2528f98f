-- The Hive archive's ledger: one row per (coverage view, pickup day) archived to
-- Hive and verified there. batch_coverage.covered_until only moves over days
-- listed here, and retention only deletes a day from MySQL while its rows still
-- count what was archived.

CREATE TABLE IF NOT EXISTS archive_days (
  view_name   VARCHAR(64)  NOT NULL,
  day         DATE         NOT NULL,
  predictions BIGINT       NOT NULL COMMENT 'predictions of the day archived to Hive',
  completed   BIGINT       NOT NULL COMMENT 'of which with an outcome',
  archived_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  purged_at   TIMESTAMP(3) NULL COMMENT 'when retention deleted the day from MySQL; Hive holds the only copy since',
  PRIMARY KEY (view_name, day)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
