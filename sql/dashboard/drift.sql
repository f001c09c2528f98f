-- The latest report of every feature (and of the live-MAE row) for the versions of one model.
SELECT feature, model_version, window_end, psi, live_mae_s, test_mae_s
FROM (
  SELECT d.*, ROW_NUMBER() OVER (PARTITION BY feature ORDER BY window_end DESC, report_id DESC) AS rn
  FROM drift_reports d
  WHERE d.model_version LIKE :versions
) latest
WHERE rn = 1
ORDER BY feature
