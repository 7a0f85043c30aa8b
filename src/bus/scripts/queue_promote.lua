local due = timer_due(KEYS[1], ARGV[1], tonumber(ARGV[3]))
local unreadable = {}
for _, m in ipairs(due) do
  local ok, f = pcall(cjson.decode, m)
  if ok and type(f) == 'table' then
    local fields = {}
    for i = 4, #ARGV do
      fields[#fields + 1] = ARGV[i]
      fields[#fields + 1] = tostring(f[ARGV[i]])
    end
    coarse_xadd(KEYS[2], ARGV[2], fields)
    timer_take(KEYS[1], m, ARGV[1])
  else
    unreadable[#unreadable + 1] = m
  end
end
for _, m in ipairs(unreadable) do
  timer_take(KEYS[1], m, ARGV[1])
end
return {#due - #unreadable, #unreadable}
