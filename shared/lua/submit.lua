-- Accept a scan: store the image, create the scan hash, queue the request (or
-- schedule it when due_ms > 0), publish its first event. All or nothing.
-- Returns {'new', entry_id} or {'duplicate', scan_id, body_hash}
if body_hash ~= '' then
  local replay = replay_of(idempotency_key)
  if replay then
    return replay
  end
  redis.call('SET', idempotency_key, scan_id .. ' ' .. body_hash, 'EX', idempotency_ttl)
end
if redis.call('EXISTS', scan_key) == 1 then
  return redis.error_reply('EXISTS scan ' .. scan_id)
end
local entry_id = accept_scan(scan_key, history_key, image_key, stream_key, delayed_key,
  events_key, scan_id, tenant, priority, job, due_ms, event, image, '', webhook, now_ms,
  image_ttl, history_ttl, maxlen, scan_maxlen)
list_scans({scan_index_key, tenant_scan_index_key}, now_ms, {scan_id}, index_horizon_ms, index_max)
return {'new', entry_id}
