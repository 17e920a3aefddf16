-- Replay a failed scan: fresh attempts, same scan id, events continue on the
-- same history; its dead letter is removed.
-- KEYS: scan, events, scan events, dead, stats
-- ARGV: scan_id, now_ms, event_json, maxlen, scan_maxlen, history_ttl, tag
-- Returns {'ok', entry_id} or {'state', state} or {'missing'}
local state, job, priority, dead_id = unpack(redis.call('HMGET', KEYS[1],
  'state', 'job', 'priority', 'dead_id'))
if not state or not job then
  return {'missing'}
end
if state ~= 'failed' then
  return {'state', state}
end
local stream = ARGV[7] .. ':requests:' .. (priority or 'normal')
local entry_id = redis.call('XADD', stream, '*', 'scan_id', ARGV[1], 'job', job)
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'entry_id', entry_id,
  'stream', stream, 'stage', 'queued', 'pct', 0, 'msg', 'Replayed; waiting for an analyzer',
  'updated_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'error', 'dead_id', 'history')
if dead_id then
  redis.call('XDEL', KEYS[4], dead_id)
end
redis.call('HINCRBY', KEYS[5], 'failed', -1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[3], 0), ARGV[4], ARGV[5], ARGV[6])
return {'ok', entry_id}
