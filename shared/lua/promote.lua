-- Move due scans from the schedule back into their request stream. Safe to run
-- from every analyzer at once: each due scan is removed and queued atomically.
-- Keys of each scan are derived from the deployment's hash tag, so they share
-- the slot of the declared keys.
-- KEYS: delayed, events
-- ARGV: now_ms, limit, tag ("{prefix}"), maxlen, scan_maxlen, history_ttl,
--       event_head, event_tail (the queued event is head .. scan_id .. tail)
-- Returns {promoted, next_due_ms or -1}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local promoted = 0
for _, sid in ipairs(due) do
  redis.call('ZREM', KEYS[1], sid)
  local scan = ARGV[3] .. ':scan:' .. sid
  local state, job, priority, attempts = unpack(
    redis.call('HMGET', scan, 'state', 'job', 'priority', 'attempts'))
  if (state == 'retrying' or state == 'scheduled') and job then
    local stream = ARGV[3] .. ':requests:' .. (priority or 'normal')
    local entry_id = redis.call('XADD', stream, '*', 'scan_id', sid, 'job', job)
    redis.call('HSET', scan, 'state', 'queued', 'entry_id', entry_id, 'stream', stream,
      'stage', 'queued', 'pct', 0, 'msg', 'Waiting for an analyzer', 'updated_ms', ARGV[1])
    redis.call('HDEL', scan, 'due_ms')
    emit(scan, KEYS[2], scan .. ':events', sid,
      with_attempt(ARGV[7] .. sid .. ARGV[8], attempts or 0), ARGV[4], ARGV[5], ARGV[6])
    promoted = promoted + 1
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {promoted, nxt[2] and tonumber(nxt[2]) or -1}
