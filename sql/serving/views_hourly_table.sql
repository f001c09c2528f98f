-- A workload's live figures per (group, hour of the event time): {sum_loss} / {completed} is the hour's live error.
CREATE TABLE IF NOT EXISTS {hourly} (
  {columns},
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY ({group}, hour_start),
  KEY ix_{hourly}_time (hour_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
