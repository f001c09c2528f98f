-- Percentiles (nearest rank) per minute of scoring of the time from the request event to its prediction.
-- Portable to MySQL 8 and MariaDB: window functions rank each minute's latencies.
WITH latency AS (
  SELECT TIMESTAMPDIFF(MINUTE, '1970-01-01', scored_ts) AS minute,
         TIMESTAMPDIFF(MICROSECOND, event_ts, scored_ts) / 1000.0 AS ms
  FROM predictions_recent
  WHERE scored_ts >= :since AND model_version LIKE :versions AND event_ts IS NOT NULL
), ranked AS (
  SELECT minute, ms,
         ROW_NUMBER() OVER (PARTITION BY minute ORDER BY ms) AS rn,
         COUNT(*) OVER (PARTITION BY minute) AS n
  FROM latency
)
SELECT minute,
       MIN(CASE WHEN rn >= CEIL(0.50 * n) THEN ms END) AS p50_ms,
       MIN(CASE WHEN rn >= CEIL(0.95 * n) THEN ms END) AS p95_ms,
       MIN(CASE WHEN rn >= CEIL(0.99 * n) THEN ms END) AS p99_ms
FROM ranked
GROUP BY minute
ORDER BY minute
