-- The (pickup zone, hour) keys one chunk touched; private to the sync's connection.
CREATE TEMPORARY TABLE IF NOT EXISTS sync_zone_hours (
  pu_location_id SMALLINT NOT NULL,
  hour_start     DATETIME NOT NULL,
  PRIMARY KEY (pu_location_id, hour_start)
) ENGINE=MEMORY
