local kept, opted = 0, 0
local n, m = tonumber(ARGV[7]), tonumber(ARGV[8])
local provider = ARGV[3] ~= ''
local markers = {}
if provider then
  kept = redis.call('EXISTS', KEYS[9])
  for i = 1, n do
    if redis.call('EXISTS', KEYS[9 + i]) == 1 then
      opted = 1
      markers[#markers + 1] = KEYS[9 + i]
    end
  end
end
local function touch()
  if not provider then return end
  redis.call('EXPIREAT', KEYS[9], ARGV[3])
  for _, key in ipairs(markers) do
    redis.call('EXPIREAT', key, tonumber(ARGV[3]) + OPT_OUT_MARGIN_SECS, 'GT')
  end
end
local version = redis.call('GET', KEYS[2]) or '0'
if version ~= ARGV[1] then touch(); return {0, version, kept, opted} end
if KEYS[8] and redis.call('EXISTS', KEYS[8]) == 1 then touch(); return {2, '', kept, opted} end
local first = 9 + n
local fields = {unpack(ARGV, first + 2 * m)}
local id = coarse_xadd(KEYS[1], ARGV[2], fields)
touch()
local summary = summary_of(fields)
fields = nil
-- Same id; cannot fail while only this script writes the summary stream,
-- and must not undo the append if it ever did.
pcall(redis.call, 'XADD', KEYS[7], id, unpack(summary))
schedule_escalation(KEYS[4], KEYS[3], ARGV[4], ARGV[5], ARGV[6],
  {unpack(ARGV, first, first + 2 * m - 1)})
redis.call('SET', KEYS[5], id, 'EXAT', ARGV[4])
redis.call('RPUSH', KEYS[6], id)
redis.call('LTRIM', KEYS[6], -MAX_THREAD_TIPS, -1)
redis.call('EXPIREAT', KEYS[6], ARGV[4])
if KEYS[8] then
  local hour = math.floor(tonumber(ARGV[2]) / 3600000) * 3600
  redis.call('SET', KEYS[8], '1', 'EXAT', math.max(hour + 3600 + 86400, tonumber(ARGV[3]) or 0))
end
return {1, id, kept, opted}
