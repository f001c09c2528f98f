INSERT INTO model_announcements_outbox (topic, msg_key, value) VALUES (:topic, :msg_key, :value)
