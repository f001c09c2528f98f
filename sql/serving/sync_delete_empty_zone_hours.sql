-- A touched key left with no prediction (its only trip moved to another hour) leaves the view.
DELETE z FROM zone_hour_stats z
JOIN sync_zone_hours k ON k.pu_location_id = z.pu_location_id AND k.hour_start = z.hour_start
WHERE NOT EXISTS (
  SELECT 1 FROM predictions_recent p
  WHERE p.pu_location_id = z.pu_location_id
    AND p.pickup_ts >= z.hour_start AND p.pickup_ts < z.hour_start + INTERVAL 1 HOUR
)
