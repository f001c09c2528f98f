DELETE FROM sync_hour_keys
