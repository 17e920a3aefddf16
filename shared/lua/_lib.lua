-- Shared helpers, prepended to every script.

-- Append one event to the global events stream and, under the same entry ID,
-- to the scan's own history, so an SSE id means the same in both. The global
-- entry names scan and tenant so notifiers route it without decoding JSON.
local function emit(scan_key, events_key, scan_events_key, scan_id, event_json, maxlen,
                    scan_maxlen, ttl)
  local tenant = redis.call('HGET', scan_key, 'tenant') or ''
  local id = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
    'scan_id', scan_id, 'tenant', tenant, 'event', event_json)
  redis.call('XADD', scan_events_key, 'MAXLEN', '~', scan_maxlen, id, 'event', event_json)
  if ttl and tonumber(ttl) > 0 then
    redis.call('EXPIRE', scan_events_key, ttl)
  end
  return id
end

-- Events are encoded by Python without the attempt number, which only Redis
-- knows at the moment of the transition; close the JSON object with it.
local function with_attempt(event_json, attempt)
  return string.sub(event_json, 1, -2) .. ',"attempt":' .. attempt .. '}'
end

-- The scan stops counting against its tenant's active scans.
local function leave_active(scan_key, counts_key)
  local tenant = redis.call('HGET', scan_key, 'tenant') or ''
  if redis.call('HINCRBY', counts_key, tenant, -1) <= 0 then
    redis.call('HDEL', counts_key, tenant)
  end
end

local function is_terminal(state)
  return state == 'completed' or state == 'failed' or state == 'cancelled'
end
