SELECT id, topic, msg_key, value FROM model_announcements_outbox
WHERE topic = :topic AND published_at IS NULL
ORDER BY id
