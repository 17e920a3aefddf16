-- Pause every replica until a time (a 429's retry-after, or a limit the API
-- reports as spent until its reset); an earlier pause never shortens a later one.
-- KEYS: state hash
-- ARGV: until_ms, reason
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
local target = tonumber(ARGV[1])
if target > current then
  redis.call('HSET', KEYS[1], 'paused_until', target, 'pause_reason', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], target + 60000)
  return 1
end
return 0
