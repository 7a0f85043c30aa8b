local function schedule_escalation(state, deadlines, expire_at, zone, priority, pairs)
  if redis.call('HSETNX', state, 'zone', zone) == 0 then return 0 end
  redis.call('HSET', state, 'priority', priority)
  redis.call('HSETNX', state, 'state', 'open')
  redis.call('HSETNX', state, 'version', '0')
  if redis.call('TTL', state) < 0 then redis.call('EXPIREAT', state, expire_at) end
  local added = 0
  for i = 1, #pairs, 2 do
    added = added + timer_schedule(deadlines, pairs[i], pairs[i + 1])
  end
  return added
end
