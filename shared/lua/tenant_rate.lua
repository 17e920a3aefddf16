-- Requests per second per tenant, across every gateway replica (GCRA: one
-- timestamp per tenant, a burst of up to `burst` requests).
-- KEYS: the tenant's theoretical-arrival-time key
-- ARGV: now_ms, interval_ms, burst
-- Returns 0 when allowed, else milliseconds until the next request is.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = interval * (tonumber(ARGV[3]) - 1)
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if now < tat - tolerance then
  return math.ceil(tat - tolerance - now)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now + interval))
return 0
