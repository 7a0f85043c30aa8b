local function current()
  local h = redis.call('HMGET', KEYS[1], 'state', 'device', 'outcome', 'version')
  return h[1] or 'open', h[2] or '', h[3] or '', tonumber(h[4] or '0') or 0
end
local function change(state, device, outcome)
  local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('HSET', KEYS[1], 'state', state, 'device', device, 'outcome', outcome)
  if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIREAT', KEYS[1], ARGV[4]) end
  local zone = redis.call('HGET', KEYS[1], 'zone') or ''
  coarse_xadd(KEYS[2], ARGV[2], {'tip_id', ARGV[1], 'state', state, 'device', device,
    'outcome', outcome, 'version', tostring(version), 'by', ARGV[5], 'zone', zone})
  redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[3])
  return {'ok', state, device, outcome, version}
end
local state, device, outcome, version = current()
local function unchanged(code) return {code, state, device, outcome, version} end
local function enrolled()
  if redis.call('EXISTS', KEYS[3]) == 0 then return 'unenrolled' end
  if redis.call('EXISTS', KEYS[4]) == 0 then return 'assignee-gone' end
  return nil
end
