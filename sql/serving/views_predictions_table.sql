-- A workload's predictions (core/views.py derives the columns from its request contract).
CREATE TABLE IF NOT EXISTS {predictions} (
  {columns},
  PRIMARY KEY ({key}),
  KEY ix_{predictions}_time ({time}),
  KEY ix_{predictions}_group_time ({group}, {time}),
  KEY ix_{predictions}_scored (scored_ts),
  KEY ix_{predictions}_model_time (model_version, {time})
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
