-- Re-date one reservation of ratelimit_acquire to the moment its API request
-- leaves: the provider counts a call when it arrives, not when capacity was
-- reserved (which may be seconds earlier: a fresh client, image preparation).
-- The request-log entry gets the send time as its score (only if it is still
-- there: there is no entry without an RPM limit); the tokens move from the
-- pending bucket to the send second's bucket.
-- Returns 1 if the request-log entry was re-dated, else 0.
local reserved = reserved_second
local sent_second = math.floor(sent_ms / 1000)
local restamped = redis.call('ZADD', requests_key, 'XX', 'CH', sent_ms, member)
for _, bucket in ipairs({{input_key, input_tokens}, {output_key, output_tokens}}) do
  local key, n = bucket[1], bucket[2]
  if n > 0 and reserved ~= sent_second then
    local have = tonumber(redis.call('HGET', key, reserved) or '0')
    local moved = math.min(n, have)
    if moved > 0 then
      if have - moved <= 0 then
        redis.call('HDEL', key, reserved)
      else
        redis.call('HINCRBY', key, reserved, -moved)
      end
      redis.call('HINCRBY', key, sent_second, moved)
      -- the hash outlives the re-dated bucket by at least a window
      if redis.call('PTTL', key) < window_ms + 2000 then
        redis.call('PEXPIRE', key, window_ms + 2000)
      end
    end
  end
end
return restamped
