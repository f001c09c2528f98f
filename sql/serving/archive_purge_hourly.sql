DELETE FROM {hourly} WHERE hour_start >= :day AND hour_start < :next_day
