local after = redis.call('LINDEX', KEYS[2], -1) or '0-0'
local id = coarse_xadd(KEYS[1], ARGV[1], {'kind', 'reply', 'envelope', ARGV[4], 'after', after})
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return id
