SELECT topic, part, next_offset FROM sync_offsets WHERE consumer = %s
