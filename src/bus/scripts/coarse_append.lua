return coarse_xadd(KEYS[1], ARGV[1], {unpack(ARGV, 2)})
