if not queue_owns(KEYS[5], ARGV[3], ARGV[2]) then return -1 end
local n = tonumber(ARGV[11])
for i = 1, n do
  coarse_xadd(KEYS[2], ARGV[4], {'kind', ARGV[6], 'tip_id', ARGV[7], 'zone', ARGV[8],
    'priority', ARGV[9], 'stage', ARGV[10], 'event', ARGV[3], 'device', ARGV[11 + i],
    'attempts', '0'})
end
for j = 12 + n, #ARGV do timer_schedule(KEYS[3], ARGV[5], ARGV[j]) end
queue_ack(KEYS[4], KEYS[5], ARGV[3])
return n
