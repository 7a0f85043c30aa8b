local due = timer_take_due(KEYS[1], ARGV[1], tonumber(ARGV[3]))
for _, m in ipairs(due) do
  local ok, f = pcall(cjson.decode, m)
  if ok and type(f) == 'table' then
    local fields = {}
    for i = 4, #ARGV do
      fields[#fields + 1] = ARGV[i]
      fields[#fields + 1] = tostring(f[ARGV[i]])
    end
    coarse_xadd(KEYS[2], ARGV[2], fields)
  end
end
return #due
