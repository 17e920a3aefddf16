-- Reserve capacity for one API call against limits shared by every replica:
-- requests per rolling window (an exact log) and input/output tokens per
-- rolling window (one-second buckets over window + 1 s, so it is never short),
-- plus a fleet-wide pause set after a 429 or when the API says it is spent.
-- Nothing is reserved unless everything fits.
-- The reservation is booked as pending, one window ahead (log score now + window,
-- tokens in the bucket of that second): it counts against every replica until
-- ratelimit_stamp re-dates it to when the request leaves, however long that takes;
-- one never sent expires after two windows.
-- Returns {wait_ms, reason}: wait_ms 0 means reserved.
local now, window = now_ms, window_ms
local itpm, otpm = input_tpm, output_tpm
local span = math.floor(window / 1000) + 1
local second = math.floor(now / 1000)
local pending_second = math.floor((now + window) / 1000)

-- A pause's wait names its cause (a 429, a limit the API reports spent), so the
-- waiting scan's event says why, as a limit's wait does.
local paused, cause = unpack(redis.call('HMGET', state_key, 'paused_until', 'pause_reason'))
paused = tonumber(paused or '0')
if paused > now then
  return {paused - now, 'paused: ' .. (cause or 'by the fleet')}
end

local function token_wait(key, limit, need)
  if limit <= 0 then return 0 end
  need = math.min(need, limit)
  local flat = redis.call('HGETALL', key)
  local buckets, used = {}, 0
  for i = 1, #flat, 2 do
    local s, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if s <= second - span then
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
      -- a pending bucket is re-dated to its send second, at the latest now
      return (math.min(b[1], second) + span) * 1000 - now
    end
  end
  return span * 1000
end

local wait, reason = 0, ''
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', requests_key, '-inf', now - window)
  if redis.call('ZCARD', requests_key) >= rpm then
    -- the oldest entry frees its slot one window after its score; a pending one
    -- (dated over half a window ahead, more than a stamp's margin) is sent now at
    -- the earliest
    local oldest = tonumber(redis.call('ZRANGE', requests_key, 0, 0, 'WITHSCORES')[2])
    if oldest > now + window / 2 then oldest = now end
    wait, reason = oldest + window - now + 1, 'requests per minute'
  end
end
local w = token_wait(input_key, itpm, need_in)
if w > wait then wait, reason = w, 'input tokens per minute' end
w = token_wait(output_key, otpm, need_out)
if w > wait then wait, reason = w, 'output tokens per minute' end
if wait > 0 then
  return {wait, reason}
end
if rpm > 0 then
  redis.call('ZADD', requests_key, now + window, member)
  redis.call('PEXPIRE', requests_key, 2 * window + 1000)
end
if itpm > 0 then
  redis.call('HINCRBY', input_key, pending_second, need_in)
  redis.call('PEXPIRE', input_key, 2 * window + 2000)
end
if otpm > 0 then
  redis.call('HINCRBY', output_key, pending_second, need_out)
  redis.call('PEXPIRE', output_key, 2 * window + 2000)
end
return {0, ''}
