if not queue_owns(KEYS[2], ARGV[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[2])
return 1
