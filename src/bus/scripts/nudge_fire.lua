local fired = {}
for i = 2, #ARGV do
  local m = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], m)
  if due and tonumber(due) <= tonumber(ARGV[1]) and redis.call('ZREM', KEYS[1], m) == 1 then
    local state = redis.call('HGET', KEYS[i], 'state')
    if not state or state == 'open' then fired[#fired + 1] = m end
  end
end
return fired
