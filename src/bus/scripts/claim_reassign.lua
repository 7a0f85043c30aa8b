local gone = enrolled()
if gone then return unchanged(gone) end
if state == 'resolved' then return unchanged('resolved') end
if state == 'claimed' and device == ARGV[6] then return unchanged('same') end
return change('claimed', ARGV[6], '')
