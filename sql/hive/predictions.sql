CREATE TABLE IF NOT EXISTS lake.predictions (
  trip_id STRING,
  model_version STRING,
  pu_location_id INT,
  do_location_id INT,
  passenger_count INT,
  trip_distance DOUBLE,
  pickup_ts TIMESTAMP,
  predicted_duration_s DOUBLE,
  event_ts TIMESTAMP,
  scored_ts TIMESTAMP,
  dropoff_ts TIMESTAMP,
  actual_duration_s DOUBLE,
  pickup_date DATE
) USING parquet
PARTITIONED BY (pickup_date)
