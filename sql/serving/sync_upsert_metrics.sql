INSERT INTO serving_metrics (source, name, ts, value, tags_json)
VALUES (%s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE value = VALUES(value), tags_json = VALUES(tags_json)
