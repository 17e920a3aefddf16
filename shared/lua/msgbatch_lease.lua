-- Take or keep the lease of an open provider Message Batch: its owner renews it;
-- once it has expired (the owner died or stalled), the first replica to ask takes
-- it over. Returns 1 held by `owner` until `until_ms`, 0 held by another, -1 gone.
local expiry = redis.call('ZSCORE', leases_key, record_id)
if not expiry or redis.call('EXISTS', record_key) == 0 then
  redis.call('ZREM', leases_key, record_id)
  return -1
end
if redis.call('HGET', record_key, 'owner') ~= owner and tonumber(expiry) > now_ms then
  return 0
end
redis.call('HSET', record_key, 'owner', owner)
redis.call('ZADD', leases_key, until_ms, record_id)
return 1
