-- Spend `count` of a tenant's scans for today at once (a batch), or none of them.
-- Returns {1, used} when taken, {0, used} when they do not fit in the day's quota.
local used = tonumber(redis.call('GET', quota_key) or '0')
if used + count > per_day then
  return {0, used}
end
used = redis.call('INCRBY', quota_key, count)
if used == count then
  redis.call('EXPIRE', quota_key, ttl)
end
return {1, used}
