-- Create one delivery, due now, unless it exists: delivery ids follow from the
-- outbox entry, so a fan-out repeated after a crash changes nothing.
-- Returns 1 when created, 0 when it was there already.
if redis.call('EXISTS', delivery_key) == 1 then
  return 0
end
redis.call('HSET', delivery_key, 'doc', doc, 'body', body, 'status', 'pending',
  'attempts', 0, 'window_ms', now_ms, 'next_ms', now_ms, 'updated_ms', now_ms)
redis.call('EXPIRE', delivery_key, ttl)
redis.call('ZADD', due_key, now_ms, delivery_id)
redis.call('ZADD', log_key, now_ms, delivery_id)
redis.call('ZREMRANGEBYRANK', log_key, 0, -log_max - 1)
redis.call('EXPIRE', log_key, ttl)
return 1
