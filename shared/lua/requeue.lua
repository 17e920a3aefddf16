-- Replay a failed scan: fresh attempts, same scan id, events continue on the
-- same history; its dead letter is removed.
-- Returns {'ok', entry_id} or {'state', state} or {'missing'}
local state, job, dead_id = unpack(redis.call('HMGET', scan_key, F.state, F.job, F.dead_id))
if not state or not job then
  return {'missing'}
end
if state ~= 'failed' then
  return {'state', state}
end
local entry_id = redis.call('XADD', stream_key, '*', 'scan_id', scan_id, 'attempts', 0, 'job', job)
redis.call('HSET', scan_key, F.state, 'queued', F.attempts, 0, F.entry_id, entry_id)
redis.call('HDEL', scan_key, F.error, F.dead_id, F.history)
if dead_id then
  redis.call('XDEL', dead_key, dead_id)
end
redis.call('HINCRBY', stats_key, 'failed', -1)
batch_note(batch_key, batch_events_key, batch_scans_key, events_key, batch_id, 'failed', -1, '',
  now_ms, maxlen, history_ttl)
redis.call('EXPIRE', scan_key, history_ttl)
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
redis.call('EXPIRE', history_key, history_ttl)
return {'ok', entry_id}
