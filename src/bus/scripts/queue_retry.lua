if not queue_owns(KEYS[3], ARGV[1], ARGV[2]) then return 0 end
timer_schedule(KEYS[4], ARGV[4], ARGV[3])
queue_ack(KEYS[2], KEYS[3], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
