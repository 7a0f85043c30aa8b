local fired = {}
for i = 4, #ARGV do
  local member = ARGV[i]
  if timer_take(KEYS[1], member, ARGV[1]) then
    local h = redis.call('HMGET', KEYS[i - 1], 'state', 'zone', 'priority')
    if h[2] and h[3] and (not h[1] or h[1] == 'open') then
      local tip, stage = string.match(member, '^(.*):(.*)$')
      local id = coarse_xadd(KEYS[2], ARGV[2],
        {'tip_id', tip, 'zone', h[2], 'priority', h[3], 'stage', stage})
      fired[#fired + 1] = {member, h[2], h[3], id}
    end
  end
end
if #fired > 0 then redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[3]) end
return fired
