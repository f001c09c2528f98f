INSERT INTO {outcomes} ({key}, {outcome_time}, {outcome_value})
VALUES (%s, %s, %s)
ON DUPLICATE KEY UPDATE {outcome_time} = VALUES({outcome_time}), {outcome_value} = VALUES({outcome_value})
