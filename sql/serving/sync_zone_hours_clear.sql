DELETE FROM sync_zone_hours
