-- The streaming job's latency (median per micro-batch, event to prediction), averaged per minute.
SELECT TIMESTAMPDIFF(MINUTE, '1970-01-01', ts) AS minute, AVG(value) AS p50_ms
FROM serving_metrics
WHERE source = 'speed.stream' AND name = 'stream.latency_ms_p50' AND ts >= :since
GROUP BY minute
ORDER BY minute
