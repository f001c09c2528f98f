CREATE TABLE IF NOT EXISTS lake.model_metrics (
  model_version STRING,
  evaluated STRING,
  metric STRING,
  value DOUBLE,
  run_id STRING
) USING parquet
PARTITIONED BY (run_id)
