SELECT last_minor FROM model_version_counters WHERE name = :name
