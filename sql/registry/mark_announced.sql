UPDATE model_announcements_outbox SET published_at = CURRENT_TIMESTAMP(3)
WHERE id IN :ids AND published_at IS NULL
