if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] then
    if last and redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], last) end
    local from = '-'
    repeat
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], from, '+', 100)
      for _, p in ipairs(pending) do
        redis.call('ZADD', KEYS[3], 'NX', 0, p[1])
        redis.call('HSETNX', KEYS[4], p[1], '')
        from = '(' .. p[1]
      end
    until #pending < 100
    redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
    return 1
  end
end
return 0
