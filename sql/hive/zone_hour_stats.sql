CREATE TABLE IF NOT EXISTS lake.zone_hour_stats (
  pu_location_id INT,
  hour_start TIMESTAMP,
  trips BIGINT,
  sum_predicted_s DOUBLE,
  completed BIGINT,
  sum_actual_s DOUBLE,
  sum_abs_error_s DOUBLE,
  pickup_date DATE
) USING parquet
PARTITIONED BY (pickup_date)
