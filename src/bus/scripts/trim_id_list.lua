local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  local ms = tonumber(string.match(id, '^(%d+)-') or '')
  if ms == nil or ms < tonumber(ARGV[1]) then n = n + 1 else break end
end
if n > 0 then redis.call('LTRIM', KEYS[1], n, -1) end
return n
