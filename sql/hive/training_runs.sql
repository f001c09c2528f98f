CREATE TABLE IF NOT EXISTS lake.training_runs (
  dag_id STRING,
  model_name STRING,
  model_version STRING,
  status STRING,
  trials INT,
  best_params STRING,
  rows_in BIGINT,
  quarantined BIGINT,
  train_rows BIGINT,
  test_mae_s DOUBLE,
  baseline_mae_s DOUBLE,
  finished_at TIMESTAMP,
  run_id STRING
) USING parquet
PARTITIONED BY (run_id)
