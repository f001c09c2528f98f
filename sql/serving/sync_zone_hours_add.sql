INSERT IGNORE INTO sync_zone_hours (pu_location_id, hour_start)
VALUES (%s, %s)
