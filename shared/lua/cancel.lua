-- Cancel a scan that has not finished: it never runs (queued, retrying) or its
-- attempt loses ownership at once (active); the owning analyzer is told over
-- the control channel to stop its task.
-- Returns {'ok', previous_state}, {'terminal', state}, {'missing'} or
-- {'recount'} when the event was built for another attempt count.
local state, made, entry_id, webhook = unpack(redis.call('HMGET', scan_key, F.state,
  F.attempts, F.entry_id, F.webhook))
if not state then
  return {'missing'}
end
if is_terminal(state) then
  return {'terminal', state}
end
if tonumber(made or '0') ~= attempts then
  return {'recount'}
end
if entry_id then
  redis.call('XACK', stream_key, group, entry_id)
  redis.call('XDEL', stream_key, entry_id)
end
redis.call('ZREM', delayed_key, scan_id)
if state == 'active' then
  leave_active(tenant_active_key, tenant)
end
redis.call('HSET', scan_key, F.state, 'cancelled')
redis.call('HDEL', scan_key, F.token, F.owner, F.due_ms, F.entry_id, F.deferred)
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
to_outbox(webhook, outbox_key, scan_id, tenant, 'cancelled')
redis.call('HINCRBY', stats_key, 'cancelled', 1)
local batch_ended = batch_note(batch_key, batch_events_key, batch_scans_key, events_key, batch_id, 'cancelled', 1,
  event, now_ms, maxlen, history_ttl)
if batch_ended then
  batch_to_outbox(batch_key, outbox_key, batch_id, batch_ended)
end
redis.call('EXPIRE', scan_key, history_ttl)
redis.call('EXPIRE', history_key, history_ttl)
redis.call('DEL', image_key)
if state == 'active' then
  redis.call('PUBLISH', channel, 'cancel ' .. scan_id)
end
return {'ok', state}
