-- A workload's outcomes, joined to its predictions by the request key.
CREATE TABLE IF NOT EXISTS {outcomes} (
  {columns},
  synced_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY ({key}),
  KEY ix_{outcomes}_time ({outcome_time})
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
