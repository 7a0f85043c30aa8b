local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  local f = cjson.decode(m)
  coarse_xadd(KEYS[2], ARGV[2], {'thread', f.thread, 'text', f.text, 'kind', f.kind, 'attempts', tostring(f.attempts)})
  redis.call('ZREM', KEYS[1], m)
end
return #due
