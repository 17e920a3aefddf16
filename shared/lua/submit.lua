-- Accept a scan: store the image, create the scan hash, queue the request (or
-- schedule it when due_ms > 0), publish its first event. All or nothing.
-- Returns {'new', entry_id} or {'duplicate', scan_id, body_hash}
if body_hash ~= '' then
  local seen = redis.call('GET', idempotency_key)
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    return {'duplicate', string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)}
  end
  redis.call('SET', idempotency_key, scan_id .. ' ' .. body_hash, 'EX', idempotency_ttl)
end
if redis.call('EXISTS', scan_key) == 1 then
  return redis.error_reply('EXISTS scan ' .. scan_id)
end
if image ~= '' then
  redis.call('SET', image_key, image, 'EX', image_ttl)
end
local entry_id = ''
if due_ms > 0 then
  redis.call('ZADD', delayed_key, due_ms, scan_id)
  redis.call('HSET', scan_key, F.state, 'scheduled', F.job, job, F.priority, priority,
    F.tenant, tenant, F.attempts, 0, F.created_ms, now_ms, F.due_ms, due_ms)
else
  entry_id = redis.call('XADD', stream_key, '*', 'scan_id', scan_id, 'attempts', 0, 'job', job)
  redis.call('HSET', scan_key, F.state, 'queued', F.job, job, F.priority, priority,
    F.tenant, tenant, F.attempts, 0, F.created_ms, now_ms, F.entry_id, entry_id)
end
if webhook == 1 then
  redis.call('HSET', scan_key, F.webhook, 1)
end
redis.call('EXPIRE', scan_key, history_ttl)
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
redis.call('EXPIRE', history_key, history_ttl)
list_scans({scan_index_key, tenant_scan_index_key}, now_ms, {scan_id}, index_horizon_ms, index_max)
return {'new', entry_id}
