-- Take ownership of a delivered entry: mark the scan active under a fresh
-- attempt token and publish the attempt's first progress event. Entries whose
-- scan is gone or already finished are acknowledged and skipped. A scan that
-- has used up its attempts without finishing (a worker crashing on it, say) is
-- claimed but reported exhausted, so the caller dead-letters it instead of
-- running it. A scan whose tenant is at its cap of active scans is deferred:
-- moved to the schedule for a short while, so other tenants' scans get the slot;
-- so is a scan an operator paused (by tenant, priority or all), until resumed.
-- The events were built for `attempts` earlier attempts; if the scan has had a
-- different number (a reclaimed entry), nothing changes and the caller asks again.
-- Returns {'ok'|'exhausted', attempt, image|false}, {'skip', reason} or {'recount', attempts}
local state, current, made, deferred, due = unpack(redis.call('HMGET', scan_key, F.state,
  F.entry_id, F.attempts, F.deferred, F.due_ms))
if not state or is_terminal(state) or current ~= entry_id then
  -- Gone, finished, or a superseded entry (the scan was requeued since).
  redis.call('XACK', stream_key, group, entry_id)
  redis.call('XDEL', stream_key, entry_id)
  return {'skip', state or 'missing'}
end
made = tonumber(made or '0')
if made ~= attempts then
  return {'recount', made}
end
-- Leaves the request stream for the schedule (so paused lag does not look like
-- work to scale for); announced once per reason ('1': cap, 'paused'), not at
-- every turn of the schedule ('paused <field>' names the pause, so a scan held
-- by another pause says so).
local function defer(until_ms, reason, ev)
  redis.call('XACK', stream_key, group, entry_id)
  redis.call('XDEL', stream_key, entry_id)
  redis.call('ZADD', delayed_key, until_ms, scan_id)
  redis.call('HSET', scan_key, F.state, 'scheduled', F.due_ms, until_ms)
  redis.call('HDEL', scan_key, F.entry_id)
  if deferred ~= reason then
    redis.call('HSET', scan_key, F.deferred, reason)
    emit(scan_key, events_key, history_key, scan_id, tenant, ev, maxlen, scan_maxlen)
  end
  return {'skip', 'deferred'}
end
if state ~= 'active' then
  if pause ~= '' then
    return defer(pause_until_ms, 'paused ' .. pause, paused_event)
  end
  if tenant_cap > 0 and tonumber(redis.call('HGET', tenant_active_key, tenant) or '0') >= tenant_cap then
    return defer(defer_until_ms, '1', deferred_event)
  end
  redis.call('HINCRBY', tenant_active_key, tenant, 1)
end
if deferred or due then
  redis.call('HDEL', scan_key, F.deferred, F.due_ms)
end
if made >= max_attempts then
  redis.call('HSET', scan_key, F.state, 'active', F.token, token, F.owner, consumer)
  return {'exhausted', made, false}
end
redis.call('HSET', scan_key, F.state, 'active', F.token, token, F.owner, consumer,
  F.attempts, made + 1)
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
local image = redis.call('GET', image_key)
if image and then_event ~= '' then
  emit(scan_key, events_key, history_key, scan_id, tenant, then_event, maxlen, scan_maxlen)
end
return {'ok', made + 1, image}
