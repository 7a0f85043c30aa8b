local function queue_ack(leases, owners, id)
  redis.call('ZREM', leases, id)
  redis.call('HDEL', owners, id)
end
