INSERT INTO {predictions} ({prediction_columns})
VALUES ({prediction_values})
ON DUPLICATE KEY UPDATE {prediction_updates}
