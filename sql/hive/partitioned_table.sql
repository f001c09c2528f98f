CREATE TABLE IF NOT EXISTS {table} (
  {columns},
  {partition} DATE
) USING parquet
PARTITIONED BY ({partition})
