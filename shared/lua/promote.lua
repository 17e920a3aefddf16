-- Move one due scan from the schedule back into its request stream. Safe to
-- run from every analyzer at once: the scan is removed and queued atomically.
-- The event was built for `attempts`; a scan that changed since stays due.
-- A scan that waited for its tenant's cap goes back quietly (announced once);
-- a paused one is promoted only once resumed (the analyzer checks) and says so.
if not redis.call('ZSCORE', delayed_key, scan_id) then
  return 0
end
local state, job, made, deferred = unpack(redis.call('HMGET', scan_key,
  F.state, F.job, F.attempts, F.deferred))
if not ((state == 'retrying' or state == 'scheduled') and job) then
  redis.call('ZREM', delayed_key, scan_id)
  return 0
end
if tonumber(made or '0') ~= attempts then
  return 0
end
redis.call('ZREM', delayed_key, scan_id)
local entry_id = redis.call('XADD', stream_key, '*', 'scan_id', scan_id,
  'attempts', attempts, 'job', job)
redis.call('HSET', scan_key, F.state, 'queued', F.entry_id, entry_id)
redis.call('HDEL', scan_key, F.due_ms)
-- A resumed scan says it is queued again; one waiting for its tenant's cap goes
-- back quietly ('1').
if deferred and string.sub(deferred, 1, 6) == 'paused' then
  redis.call('HDEL', scan_key, F.deferred)
  deferred = false
end
if not deferred then
  emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
end
return 1
