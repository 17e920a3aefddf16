-- Lease the deliveries that are due: each moves lease_ms ahead in the schedule,
-- so if its sender dies mid-request another one sends it when the lease ends.
local ids = redis.call('ZRANGEBYSCORE', due_key, '-inf', now_ms, 'LIMIT', 0, count)
for _, id in ipairs(ids) do
  redis.call('ZADD', due_key, now_ms + lease_ms, id)
end
return ids
