local id = coarse_xadd(KEYS[1], ARGV[1], {unpack(ARGV, 3)})
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
return id
