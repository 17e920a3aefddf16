-- End an attempt for good (completed or failed): write the outcome, publish
-- the terminal event, acknowledge and delete the request entry, count it; a
-- failure is also copied, with its history, to the dead-letter stream.
-- Only the attempt holding the token may do this: a stale worker's late
-- answer changes nothing (and must not ack: the entry may belong to another
-- consumer now).
local owner_token, webhook = unpack(redis.call('HMGET', scan_key, F.token, F.webhook))
if owner_token ~= token then
  return 0
end
leave_active(tenant_active_key, tenant)
local outcome_field = F.error
if state == 'completed' then
  outcome_field = F.result
end
redis.call('HSET', scan_key, F.state, state, outcome_field, outcome)
redis.call('HDEL', scan_key, F.token, F.owner, F.due_ms, F.entry_id)
if held ~= '' then
  emit(scan_key, events_key, history_key, scan_id, tenant, held, maxlen, scan_maxlen)
end
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
to_outbox(webhook, outbox_key, scan_id, tenant, state)
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
redis.call('HINCRBY', stats_key, state, 1)
local batch_ended = batch_note(batch_key, batch_events_key, batch_scans_key, events_key, batch_id, state, 1, event,
  now_ms, maxlen, retention_ttl)
if batch_ended then
  batch_to_outbox(batch_key, outbox_key, batch_id, batch_ended)
end
redis.call('EXPIRE', scan_key, retention_ttl)
redis.call('EXPIRE', history_key, retention_ttl)
if state == 'completed' then
  redis.call('DEL', image_key)
else
  local job, history = unpack(redis.call('HMGET', scan_key, F.job, F.history))
  local dead_id = redis.call('XADD', dead_key, 'MAXLEN', '~', dead_maxlen, '*',
    'scan_id', scan_id, 'tenant', tenant, 'job', job, 'error', outcome, 'attempts', attempt,
    'history', history or '', 'failed_ms', now_ms)
  redis.call('HSET', scan_key, F.dead_id, dead_id)
end
return 1
