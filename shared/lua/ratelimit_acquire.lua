-- Reserve capacity for one API call against limits shared by every replica:
-- requests per rolling minute (an exact log) and input/output tokens per
-- rolling minute (one-second buckets over 61 s, so the window is never short),
-- plus a fleet-wide pause set after a 429 or when the API says it is spent.
-- Nothing is reserved unless everything fits.
-- KEYS: request log (zset), input buckets (hash), output buckets (hash), state (hash)
-- ARGV: now_ms, rpm, input_tpm, output_tpm, input_estimate, output_estimate, member
-- Returns {wait_ms, reason}: wait_ms 0 means reserved.
local now = tonumber(ARGV[1])
local rpm, itpm, otpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local need_in, need_out = tonumber(ARGV[5]), tonumber(ARGV[6])
local second = math.floor(now / 1000)

local paused = tonumber(redis.call('HGET', KEYS[4], 'paused_until') or '0')
if paused > now then
  return {paused - now, 'paused'}
end

local function token_wait(key, limit, need)
  if limit <= 0 then return 0 end
  need = math.min(need, limit)
  local flat = redis.call('HGETALL', key)
  local buckets, used = {}, 0
  for i = 1, #flat, 2 do
    local s, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if s <= second - 61 then
      redis.call('HDEL', key, flat[i])
    else
      used = used + n
      buckets[#buckets + 1] = {s, n}
    end
  end
  if used + need <= limit then return 0 end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  for _, b in ipairs(buckets) do
    used = used - b[2]
    if used + need <= limit then
      return (b[1] + 61) * 1000 - now
    end
  end
  return 61000
end

local wait, reason = 0, ''
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    wait, reason = tonumber(oldest[2]) + 60000 - now + 1, 'requests per minute'
  end
end
local w = token_wait(KEYS[2], itpm, need_in)
if w > wait then wait, reason = w, 'input tokens per minute' end
w = token_wait(KEYS[3], otpm, need_out)
if w > wait then wait, reason = w, 'output tokens per minute' end
if wait > 0 then
  return {wait, reason}
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[7])
  redis.call('PEXPIRE', KEYS[1], 61000)
end
if itpm > 0 then
  redis.call('HINCRBY', KEYS[2], second, need_in)
  redis.call('PEXPIRE', KEYS[2], 62000)
end
if otpm > 0 then
  redis.call('HINCRBY', KEYS[3], second, need_out)
  redis.call('PEXPIRE', KEYS[3], 62000)
end
return {0, ''}
