local id = coarse_xadd(KEYS[2], ARGV[2], {unpack(ARGV, 3)})
queue_ack(KEYS[3], KEYS[4], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
