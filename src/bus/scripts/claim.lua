local gone = enrolled()
if gone then return unchanged(gone) end
if state == 'resolved' then return unchanged('resolved') end
if state == 'claimed' then
  if device == ARGV[5] then return unchanged('same') end
  return unchanged('taken')
end
return change('claimed', ARGV[5], '')
