INSERT IGNORE INTO ingest_manifest
  (workload, sha256, source_name, source_bytes, variant, row_count, days, rows_outside_month, rows_no_event_time,
   objects, manifest_uri)
VALUES
  (:workload, :sha256, :source_name, :source_bytes, :variant, :row_count, :days, :rows_outside_month,
   :rows_no_event_time, :objects, :manifest_uri)
