local out = {}
local n = tonumber(ARGV[4])
local ended = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, n)
for _, id in ipairs(ended) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] then
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    redis.call('HSET', KEYS[4], id, ARGV[1])
    out[#out + 1] = e[1]
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
local cursor = redis.call('GET', KEYS[2])
if not cursor then
  cursor = ARGV[5]
  redis.call('SET', KEYS[2], cursor)
end
local new = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', n)
for _, e in ipairs(new) do
  redis.call('ZADD', KEYS[3], ARGV[3], e[1])
  redis.call('HSET', KEYS[4], e[1], ARGV[1])
  out[#out + 1] = e
end
if new[#new] then redis.call('SET', KEYS[2], new[#new][1]) end
return out
