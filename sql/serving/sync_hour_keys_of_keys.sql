-- Keys of predictions already stored: an outcome changes its hour's figures, a redelivered prediction may move it.
INSERT IGNORE INTO sync_hour_keys ({group}, hour_start)
SELECT DISTINCT {group}, CAST(DATE({time}) AS DATETIME) + INTERVAL HOUR({time}) HOUR
FROM {predictions}
WHERE {key} IN %s
