return schedule_escalation(KEYS[2], KEYS[1], ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 4)})
