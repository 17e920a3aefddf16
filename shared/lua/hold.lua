-- Keep a paused scan in the schedule when it falls due instead of queueing it:
-- it never enters a request stream (no lag for the autoscaler to scale up for),
-- its due time moves on, and it says it is paused, once per pause (the field
-- `deferred` names the pause that holds it).
-- The event was built for `attempts`; a scan that changed since is left alone.
-- Returns 1 when held.
if not redis.call('ZSCORE', delayed_key, scan_id) then
  return 0
end
local state, made, deferred = unpack(redis.call('HMGET', scan_key, F.state, F.attempts,
  F.deferred))
if not (state == 'retrying' or state == 'scheduled') or tonumber(made or '0') ~= attempts then
  return 0
end
redis.call('ZADD', delayed_key, until_ms, scan_id)
redis.call('HSET', scan_key, F.due_ms, until_ms)
if deferred ~= 'paused ' .. pause then
  redis.call('HSET', scan_key, F.state, 'scheduled', F.deferred, 'paused ' .. pause)
  emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
end
return 1
