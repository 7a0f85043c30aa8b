local function summary_of(fields)
  local summary = {}
  for i = 1, #fields - 1, 2 do
    local f = fields[i]
    if f ~= 'envelope' and f ~= 'pseudonym' and f ~= 'key_version' then
      summary[#summary + 1] = f
      summary[#summary + 1] = fields[i + 1]
    end
  end
  return summary
end
