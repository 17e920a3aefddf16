-- Pause every replica until a time (a 429's retry-after, or a limit the API
-- reports as spent until its reset); an earlier pause never shortens a later one.
local current = tonumber(redis.call('HGET', state_key, 'paused_until') or '0')
if until_ms > current then
  redis.call('HSET', state_key, 'paused_until', until_ms, 'pause_reason', reason)
  redis.call('PEXPIREAT', state_key, until_ms + 60000)
  return 1
end
return 0
