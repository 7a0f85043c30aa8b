local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  local ok, f = pcall(cjson.decode, m)
  if ok and type(f) == 'table' then
    coarse_xadd(KEYS[2], ARGV[2], {'kind', tostring(f.kind), 'tip_id', tostring(f.tip_id),
      'zone', tostring(f.zone), 'priority', tostring(f.priority), 'stage', tostring(f.stage),
      'event', tostring(f.event), 'device', tostring(f.device), 'attempts', tostring(f.attempts)})
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
