DELETE FROM {predictions} WHERE {time} >= :day AND {time} < :next_day
