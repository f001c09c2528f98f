INSERT INTO training_runs (run_id, dag_run_id, model_name, model_version, status, trials, best_params, metrics_json,
                           finished_at)
VALUES (:run_id, :dag_run_id, :model_name, :model_version, :status, :trials, :best_params, :metrics_json, :finished_at)
ON DUPLICATE KEY UPDATE
  model_version = VALUES(model_version), status = VALUES(status), trials = VALUES(trials),
  best_params = VALUES(best_params), metrics_json = VALUES(metrics_json), finished_at = VALUES(finished_at)
