-- Bring your own data: what `lambdaml ingest` loaded into the raw layer, and what each model version read.
--
-- ingest_manifest: one row per ingested source file, keyed by the sha256 of its bytes (ingesting the same
-- bytes again writes nothing). `objects` lists the raw Parquet objects it produced (uri, rows, bytes, sha256).
-- The same manifest is in the lake as JSON (manifests/ingest/<workload>/<sha256>.json), written after the
-- objects and before this row.
--
-- model_versions.data_objects: the exact raw objects a version trained on (uri, bytes, sha256, and the source
-- file's name and sha256 for ingested ones), beside the partitions in data_partitions. NULL for older versions.

CREATE TABLE IF NOT EXISTS ingest_manifest (
  workload           VARCHAR(64)   NOT NULL,
  sha256             CHAR(64)      NOT NULL COMMENT 'sha256 of the source file bytes',
  source_name        VARCHAR(1024) NOT NULL COMMENT 'the path or URI the file was ingested from',
  source_bytes       BIGINT        NOT NULL,
  variant            VARCHAR(128)  NOT NULL COMMENT 'which known schema variant the file is',
  row_count          BIGINT        NOT NULL,
  days               INT           NOT NULL COMMENT 'day partitions it produced',
  rows_outside_month BIGINT        NOT NULL COMMENT 'rows dated outside the month of the file',
  rows_no_event_time BIGINT        NOT NULL COMMENT 'rows without a pickup time (validation quarantines them)',
  objects            JSON          NOT NULL,
  manifest_uri       VARCHAR(1024) NOT NULL,
  ingested_at        TIMESTAMP(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (workload, sha256),
  KEY ix_ingest_manifest_time (ingested_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

ALTER TABLE model_versions
  ADD COLUMN IF NOT EXISTS data_objects JSON NULL COMMENT 'raw objects trained on: uri, bytes, sha256, source'
  AFTER data_partitions;
