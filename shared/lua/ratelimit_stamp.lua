-- Re-date one reservation of ratelimit_acquire to the moment its API request
-- leaves: the provider counts a call when it arrives, not when capacity was
-- reserved (which may be seconds earlier: a fresh client, image preparation).
-- The request-log entry gets the send time as its score (only if it is still
-- there: there is no entry without an RPM limit); the tokens move from the
-- pending bucket to the send second's bucket.
-- KEYS: request log (zset), input buckets (hash), output buckets (hash)
-- ARGV: member, sent_ms (when the request leaves, plus a margin for its way to
--       the provider, under half a window), reserved_second (the bucket acquire
--       booked the tokens in), input_tokens, output_tokens (0 for a limit that is
--       off), window_ms
-- Returns 1 if the request-log entry was re-dated, else 0.
local sent = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
local sent_second = math.floor(sent / 1000)
local restamped = redis.call('ZADD', KEYS[1], 'XX', 'CH', sent, ARGV[1])
for i = 2, 3 do
  local n = tonumber(ARGV[i + 2])
  if n > 0 and reserved ~= sent_second then
    local have = tonumber(redis.call('HGET', KEYS[i], reserved) or '0')
    local moved = math.min(n, have)
    if moved > 0 then
      if have - moved <= 0 then
        redis.call('HDEL', KEYS[i], reserved)
      else
        redis.call('HINCRBY', KEYS[i], reserved, -moved)
      end
      redis.call('HINCRBY', KEYS[i], sent_second, moved)
      -- the hash outlives the re-dated bucket by at least a window
      if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[6]) + 2000 then
        redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[6]) + 2000)
      end
    end
  end
end
return restamped
