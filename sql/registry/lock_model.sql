SELECT version FROM model_versions WHERE name = :name FOR UPDATE
