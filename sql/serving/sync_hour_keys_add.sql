INSERT IGNORE INTO sync_hour_keys ({group}, hour_start)
VALUES (%s, %s)
