-- A retryable failure: acknowledge the entry and schedule the next attempt,
-- in one step, so the scan is always either in a stream or in the schedule.
-- KEYS: scan, events, scan events, requests stream, delayed, tenant counts
-- ARGV: scan_id, token, now_ms, due_ms, error_json, event_json, maxlen,
--       scan_maxlen, group, entry_id, history_ttl, msg
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
leave_active(KEYS[1], KEYS[6])
local history = redis.call('HGET', KEYS[1], 'history') or ''
redis.call('HSET', KEYS[1], 'state', 'retrying', 'error', ARGV[5], 'stage', 'retrying',
  'msg', ARGV[12], 'updated_ms', ARGV[3], 'due_ms', ARGV[4],
  'history', history .. ARGV[5] .. '\n')
redis.call('HDEL', KEYS[1], 'token', 'owner')
local attempt = redis.call('HGET', KEYS[1], 'attempts')
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[6], attempt), ARGV[7], ARGV[8], ARGV[11])
redis.call('XACK', KEYS[4], ARGV[9], ARGV[10])
redis.call('XDEL', KEYS[4], ARGV[10])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
return 1
