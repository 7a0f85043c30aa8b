local gone = enrolled()
if gone then return unchanged(gone) end
if state == 'resolved' then return unchanged('resolved') end
if state ~= 'claimed' then return unchanged('open') end
if device ~= ARGV[5] then return unchanged('not-claimant') end
return change('open', '', '')
