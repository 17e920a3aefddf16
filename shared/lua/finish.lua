-- End an attempt for good (completed or failed): write the outcome, publish
-- the terminal event, acknowledge and delete the request entry, count it; a
-- failure is also copied, with its history, to the dead-letter stream.
-- Only the attempt holding the token may do this: a stale worker's late
-- answer changes nothing (and must not ack: the entry may belong to another
-- consumer now).
-- KEYS: scan, events, scan events, requests stream, stats, image, dead, tenant counts
-- ARGV: scan_id, token, now_ms, state, outcome_field, outcome_json,
--       event_json, maxlen, scan_maxlen, group, entry_id, retention_ttl, msg,
--       dead_maxlen
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
local state = ARGV[4]
leave_active(KEYS[1], KEYS[8])
redis.call('HSET', KEYS[1], 'state', state, ARGV[5], ARGV[6], 'stage', state,
  'pct', state == 'completed' and 100 or redis.call('HGET', KEYS[1], 'pct'),
  'msg', ARGV[13], 'updated_ms', ARGV[3])
redis.call('HDEL', KEYS[1], 'token', 'owner', 'due_ms')
local attempt = redis.call('HGET', KEYS[1], 'attempts')
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[7], attempt), ARGV[8], ARGV[9], ARGV[12])
redis.call('XACK', KEYS[4], ARGV[10], ARGV[11])
redis.call('XDEL', KEYS[4], ARGV[11])
redis.call('HINCRBY', KEYS[5], state, 1)
redis.call('EXPIRE', KEYS[1], ARGV[12])
if state == 'completed' then
  redis.call('DEL', KEYS[6])
else
  local job, history = unpack(redis.call('HMGET', KEYS[1], 'job', 'history'))
  local dead_id = redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[14], '*',
    'scan_id', ARGV[1], 'job', job, 'error', ARGV[6], 'attempts', attempt,
    'history', history or '', 'failed_ms', ARGV[3])
  redis.call('HSET', KEYS[1], 'dead_id', dead_id)
end
return 1
