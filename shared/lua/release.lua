-- Hand an entry back for immediate redelivery (a worker shutting down): the
-- entry is re-added to its stream and the scan is queued again. With a token,
-- only if that attempt still owns the scan; without (an entry read but never
-- started), only if the scan is still queued on that entry.
-- KEYS: scan, events, scan events, requests stream, tenant counts
-- ARGV: scan_id, token, entry_id, now_ms, event_json, maxlen, scan_maxlen,
--       group, history_ttl
local state, token, current, job, attempts = unpack(redis.call('HMGET', KEYS[1],
  'state', 'token', 'entry_id', 'job', 'attempts'))
local owned
if ARGV[2] ~= '' then
  owned = token == ARGV[2]
else
  owned = state == 'queued' and current == ARGV[3]
end
if not owned or not job then
  if ARGV[2] == '' then
    -- An unstarted entry whose scan moved on (cancelled, say): just drop it.
    redis.call('XACK', KEYS[4], ARGV[8], ARGV[3])
    redis.call('XDEL', KEYS[4], ARGV[3])
  end
  return 0
end
if ARGV[2] ~= '' then
  leave_active(KEYS[1], KEYS[5])
end
redis.call('XACK', KEYS[4], ARGV[8], ARGV[3])
redis.call('XDEL', KEYS[4], ARGV[3])
local entry_id = redis.call('XADD', KEYS[4], '*', 'scan_id', ARGV[1], 'job', job)
redis.call('HSET', KEYS[1], 'state', 'queued', 'entry_id', entry_id, 'stage', 'queued',
  'pct', 0, 'msg', 'Handed back by a stopping analyzer', 'updated_ms', ARGV[4])
redis.call('HDEL', KEYS[1], 'token', 'owner')
if ARGV[2] ~= '' then
  emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[5], attempts or 0), ARGV[6], ARGV[7], ARGV[9])
end
return 1
