if state ~= 'claimed' or device ~= ARGV[5] then return unchanged('not-claimant') end
local reply = change('open', '', '')
for i = 6, #ARGV, 2 do timer_advance(KEYS[3], ARGV[i], ARGV[i + 1]) end
return reply
