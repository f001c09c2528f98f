UPDATE model_versions SET metrics_json = :metrics_json WHERE name = :name AND version = :version
