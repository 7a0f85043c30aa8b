local function coarse_xadd(key, ms, fields)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then
    local lms = string.match(last[1][1], '^(%d+)-')
    if lms and tonumber(lms) > tonumber(ms) then ms = lms end
  end
  local ok, id = pcall(redis.call, 'XADD', key, ms .. '-*', unpack(fields))
  if ok then return id end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      ms = string.match(info[i + 1], '^(%d+)-')
    end
  end
  return redis.call('XADD', key, ms .. '-*', unpack(fields))
end
