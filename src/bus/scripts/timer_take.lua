return timer_take_due(KEYS[1], ARGV[1], tonumber(ARGV[2]))
