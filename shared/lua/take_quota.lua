-- Spend one of a tenant's scans for today, if any is left.
-- Returns {1, used} when taken, {0, used} when the day's quota is spent.
local used = tonumber(redis.call('GET', quota_key) or '0')
if used >= per_day then
  return {0, used}
end
used = redis.call('INCR', quota_key)
if used == 1 then
  redis.call('EXPIRE', quota_key, ttl)
end
return {1, used}
