-- Accept a scan: store the image, create the scan hash, queue the request,
-- publish the `queued` event. All or nothing.
-- A scan due later (delay_ms / run_at) goes to the schedule instead, `scheduled`.
-- A tenant over its scans-per-day quota gets {'quota', used} and nothing is written.
-- KEYS: scan, requests stream, events, scan events, image, idempotency key, delayed,
--       the tenant's quota counter for today
-- ARGV: scan_id, job_json, now_ms, event_json, maxlen, scan_maxlen,
--       image_bytes ('' when none), image_ttl, history_ttl, priority,
--       idempotency ('' when none: "<body hash>"), idempotency_ttl, tenant, due_ms (0: now),
--       scans_per_day (0: no quota)
-- Returns {'new', entry_id} or {'duplicate', scan_id, body_hash}
local scan_id = ARGV[1]
local quota = tonumber(ARGV[15])
if ARGV[11] ~= '' then
  local seen = redis.call('GET', KEYS[6])
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    return {'duplicate', string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)}
  end
  redis.call('SET', KEYS[6], scan_id .. ' ' .. ARGV[11], 'EX', ARGV[12])
end
if quota > 0 then
  local used = tonumber(redis.call('GET', KEYS[8]) or '0')
  if used >= quota then
    if ARGV[11] ~= '' then
      redis.call('DEL', KEYS[6])
    end
    return {'quota', used}
  end
  redis.call('INCR', KEYS[8])
  redis.call('EXPIRE', KEYS[8], 2 * 86400)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS scan ' .. scan_id)
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[8])
end
local due = tonumber(ARGV[14])
local entry_id = ''
if due > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[7], due, scan_id)
  redis.call('HSET', KEYS[1],
    'state', 'scheduled', 'job', ARGV[2], 'priority', ARGV[10], 'attempts', 0,
    'stage', 'scheduled', 'pct', 0, 'msg', 'Scheduled', 'due_ms', due,
    'created_ms', ARGV[3], 'updated_ms', ARGV[3], 'stream', KEYS[2], 'tenant', ARGV[13])
else
  entry_id = redis.call('XADD', KEYS[2], '*', 'scan_id', scan_id, 'job', ARGV[2])
  redis.call('HSET', KEYS[1],
    'state', 'queued', 'job', ARGV[2], 'priority', ARGV[10], 'attempts', 0,
    'stage', 'queued', 'pct', 0, 'msg', 'Waiting for an analyzer',
    'created_ms', ARGV[3], 'updated_ms', ARGV[3], 'entry_id', entry_id, 'stream', KEYS[2],
    'tenant', ARGV[13])
end
redis.call('EXPIRE', KEYS[1], ARGV[9])
emit(KEYS[1], KEYS[3], KEYS[4], scan_id, with_attempt(ARGV[4], 0), ARGV[5], ARGV[6], ARGV[9])
return {'new', entry_id}
