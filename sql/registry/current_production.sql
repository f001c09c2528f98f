SELECT version FROM model_versions WHERE name = :name AND stage = 'production'
