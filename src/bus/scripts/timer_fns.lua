local function timer_schedule(timers, due, member)
  return redis.call('ZADD', timers, 'NX', due, member)
end
local function timer_advance(timers, due, member)
  return redis.call('ZADD', timers, 'LT', due, member)
end
local function timer_take(timers, member, now)
  local due = redis.call('ZSCORE', timers, member)
  return due and tonumber(due) <= tonumber(now) and redis.call('ZREM', timers, member) == 1
end
local function timer_due(timers, now, n)
  return redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, n)
end
local function timer_take_due(timers, now, n)
  local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, n)
  for _, m in ipairs(due) do redis.call('ZREM', timers, m) end
  return due
end
