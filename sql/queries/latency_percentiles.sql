-- Latency percentiles: stream end-to-end (scored_ts - event_ts) and serving metrics.
-- Nearest-rank percentiles over the last `hours` hours: the stream's end-to-end latency per model
-- version (predictions_recent, in ms) and every serving metric whose name mentions latency or seconds
-- (serving_metrics, in the metric's own unit).
-- Parameter: hours (default 24).
WITH samples AS (
  SELECT 'predictions_recent' AS source,
         CONCAT('scored_ts - event_ts (ms), ', model_version) AS measure,
         TIMESTAMPDIFF(MICROSECOND, event_ts, scored_ts) / 1000 AS value
  FROM predictions_recent
  WHERE scored_ts >= UTC_TIMESTAMP() - INTERVAL COALESCE(:hours, 24) HOUR AND event_ts IS NOT NULL
  UNION ALL
  SELECT 'serving_metrics', CONCAT(source, ' ', name), value
  FROM serving_metrics
  WHERE ts >= UTC_TIMESTAMP() - INTERVAL COALESCE(:hours, 24) HOUR
    AND (name LIKE '%latency%' OR name LIKE '%seconds%')
), ranked AS (
  SELECT source, measure, value,
         ROW_NUMBER() OVER (PARTITION BY source, measure ORDER BY value) AS n,
         COUNT(*) OVER (PARTITION BY source, measure) AS samples
  FROM samples
)
SELECT source, measure,
       MAX(samples) AS samples,
       MIN(CASE WHEN n >= CEIL(0.50 * samples) THEN value END) AS p50,
       MIN(CASE WHEN n >= CEIL(0.90 * samples) THEN value END) AS p90,
       MIN(CASE WHEN n >= CEIL(0.95 * samples) THEN value END) AS p95,
       MIN(CASE WHEN n >= CEIL(0.99 * samples) THEN value END) AS p99,
       MAX(value) AS max_value
FROM ranked
GROUP BY source, measure
ORDER BY source, measure
