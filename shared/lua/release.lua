-- Hand an entry back for immediate redelivery (a worker shutting down): the
-- entry is re-added to its stream and the scan is queued again. With a token,
-- only if that attempt still owns the scan; without (an entry read but never
-- started), only if the scan is still queued on that entry.
local state, owner_token, current, job, attempts = unpack(redis.call('HMGET', scan_key,
  F.state, F.token, F.entry_id, F.job, F.attempts))
local owned
if token ~= '' then
  owned = owner_token == token
else
  owned = state == 'queued' and current == entry_id
end
if not owned or not job then
  if token == '' then
    -- An unstarted entry whose scan moved on (cancelled, say): just drop it.
    redis.call('XACK', stream_key, group, entry_id)
    redis.call('XDEL', stream_key, entry_id)
  end
  return 0
end
if token ~= '' then
  leave_active(tenant_active_key, tenant)
end
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
local new_id = redis.call('XADD', stream_key, '*', 'scan_id', scan_id,
  'attempts', attempts or 0, 'job', job)
redis.call('HSET', scan_key, F.state, 'queued', F.entry_id, new_id)
redis.call('HDEL', scan_key, F.token, F.owner)
if event ~= '' then
  emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
end
return 1
