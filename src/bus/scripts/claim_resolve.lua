local gone = enrolled()
if gone then return unchanged(gone) end
if state == 'resolved' then
  if device == ARGV[5] and outcome == ARGV[6] then return unchanged('same') end
  return unchanged('resolved')
end
if state ~= 'claimed' then return unchanged('open') end
if device ~= ARGV[5] then return unchanged('not-claimant') end
return change('resolved', ARGV[5], ARGV[6])
