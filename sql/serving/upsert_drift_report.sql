INSERT INTO drift_reports (model_version, window_start, window_end, feature, psi, live_mae_s, test_mae_s, breached)
VALUES (:model_version, :window_start, :window_end, :feature, :psi, :live_mae_s, :test_mae_s, :breached)
ON DUPLICATE KEY UPDATE psi = VALUES(psi), live_mae_s = VALUES(live_mae_s), test_mae_s = VALUES(test_mae_s),
                        breached = VALUES(breached)
