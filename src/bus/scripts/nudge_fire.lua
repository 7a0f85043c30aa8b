local fired = {}
for i = 2, #ARGV do
  local m = ARGV[i]
  if timer_take(KEYS[1], m, ARGV[1]) then
    local state = redis.call('HGET', KEYS[i], 'state')
    if not state or state == 'open' then fired[#fired + 1] = m end
  end
end
return fired
