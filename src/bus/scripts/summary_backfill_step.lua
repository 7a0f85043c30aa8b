local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(ams) ~= tonumber(bms) then return tonumber(ams) < tonumber(bms) end
  return tonumber(aseq) < tonumber(bseq)
end
local function edge(cmd, key, from, to)
  local e = redis.call(cmd, key, from, to, 'COUNT', 1)
  return e[1] and e[1][1]
end
local function copy(entries)
  for _, e in ipairs(entries) do
    redis.call('XADD', KEYS[3], e[1], unpack(summary_of(e[2])))
  end
  return #entries
end
local last = edge('XREVRANGE', KEYS[3], '+', '-')
if not last then
  -- Empty or never begun: XADD below must not meet an old last id.
  redis.call('DEL', KEYS[3])
  local oldest_alert = edge('XRANGE', KEYS[1], '-', '+')
  local oldest_summary = edge('XRANGE', KEYS[2], '-', '+')
  if not oldest_alert then return {0, 0} end
  if oldest_summary and not before(oldest_alert, oldest_summary) then return {0, 0} end
end
local oldest_summary = edge('XRANGE', KEYS[2], '-', '+')
local from = last and ('(' .. last) or '-'
local to = oldest_summary and ('(' .. oldest_summary) or '+'
local n = tonumber(ARGV[1])
local copied = copy(redis.call('XRANGE', KEYS[1], from, to, 'COUNT', n))
if copied == n then return {1, copied} end
last = edge('XREVRANGE', KEYS[3], '+', '-')
from = last and ('(' .. last) or '-'
n = tonumber(ARGV[2])
local summaries = copy(redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', n))
if summaries == n then return {1, copied} end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('RENAME', KEYS[3], KEYS[2])
end
return {0, copied}
