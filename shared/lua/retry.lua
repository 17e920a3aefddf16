-- A retryable failure: acknowledge the entry and schedule the next attempt,
-- in one step, so the scan is always either in a stream or in the schedule.
local owner_token, history = unpack(redis.call('HMGET', scan_key, F.token, F.history))
if owner_token ~= token then
  return 0
end
leave_active(tenant_active_key, tenant)
history = history or ''
redis.call('HSET', scan_key, F.state, 'retrying', F.error, error, F.due_ms, due_ms,
  F.history, history .. error .. '\n')
redis.call('HDEL', scan_key, F.token, F.owner, F.entry_id)
if held ~= '' then
  emit(scan_key, events_key, history_key, scan_id, tenant, held, maxlen, scan_maxlen)
end
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
redis.call('ZADD', delayed_key, due_ms, scan_id)
return 1
