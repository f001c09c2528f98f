INSERT INTO sync_offsets (consumer, topic, part, next_offset)
VALUES (%s, %s, %s, %s)
ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset)
