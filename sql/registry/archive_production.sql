UPDATE model_versions SET stage = 'archived' WHERE name = :name AND stage = 'production' AND version <> :version
