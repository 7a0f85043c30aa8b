local function queue_owns(owners, id, consumer)
  return redis.call('HGET', owners, id) == consumer
end
