INSERT INTO model_versions
  (name, version, minor, stage, artifact_uri, sha256, metrics_json, params_json, data_partitions, data_objects,
   feature_spec, code_version)
VALUES
  (:name, :version, :minor, :stage, :artifact_uri, :sha256, :metrics_json, :params_json, :data_partitions,
   :data_objects, :feature_spec, :code_version)
