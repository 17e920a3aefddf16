-- Requests per second per tenant, across every gateway replica (GCRA: one
-- timestamp per tenant, a burst of up to `burst` requests).
-- Returns 0 when allowed, else milliseconds until the next request is.
local now, interval = now_ms, interval_ms
local tolerance = interval * (burst - 1)
local tat = math.max(tonumber(redis.call('GET', tat_key) or '0'), now)
if now < tat - tolerance then
  return math.ceil(tat - tolerance - now)
end
local next_tat = tat + interval
redis.call('SET', tat_key, next_tat, 'PX', math.ceil(next_tat - now + interval))
return 0
