-- Cancel a scan that has not finished: it never runs (queued, retrying) or its
-- attempt loses ownership at once (active); the owning analyzer is told over
-- the control channel to stop its task.
-- KEYS: scan, events, scan events, delayed, stats, image, tenant counts
-- ARGV: scan_id, now_ms, event_json, maxlen, scan_maxlen, group, history_ttl, channel
-- Returns {'ok', previous_state} or {'terminal', state} or {'missing'}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'missing'}
end
if is_terminal(state) then
  return {'terminal', state}
end
local entry_id, stream = unpack(redis.call('HMGET', KEYS[1], 'entry_id', 'stream'))
if entry_id and stream then
  redis.call('XACK', stream, ARGV[6], entry_id)
  redis.call('XDEL', stream, entry_id)
end
redis.call('ZREM', KEYS[4], ARGV[1])
if state == 'active' then
  leave_active(KEYS[1], KEYS[7])
end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'stage', 'cancelled',
  'msg', 'Cancelled', 'updated_ms', ARGV[2])
redis.call('HDEL', KEYS[1], 'token', 'owner', 'due_ms')
local attempt = redis.call('HGET', KEYS[1], 'attempts')
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[3], attempt), ARGV[4], ARGV[5], ARGV[7])
redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('DEL', KEYS[6])
if state == 'active' then
  redis.call('PUBLISH', ARGV[8], 'cancel ' .. ARGV[1])
end
return {'ok', state}
