-- The (group, hour) keys one chunk touched; private to the sync's connection, made anew for each run (the group
-- column's type is the workload's).
CREATE TEMPORARY TABLE sync_hour_keys (
  {group}    {group_type} NOT NULL,
  hour_start DATETIME NOT NULL,
  PRIMARY KEY ({group}, hour_start)
) ENGINE=MEMORY
