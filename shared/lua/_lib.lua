-- Shared helpers, prepended to every script.

-- Publish one event: append it to the deployment's events stream and, under the
-- same entry ID, to the scan's own history (so an SSE id means the same in
-- both); the history's last entry is the scan's progress as /status shows it.
-- The global entry names scan and tenant so notifiers route it without
-- decoding JSON. The history's expiry is set where it starts and where the scan
-- ends, not per event.
local function emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen,
                    scan_maxlen)
  local id = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
    'scan_id', scan_id, 'tenant', tenant, 'event', event)
  redis.call('XADD', history_key, 'MAXLEN', '~', scan_maxlen, id, 'event', event)
  return id
end

-- The scan stops counting against its tenant's active scans.
local function leave_active(counts_key, tenant)
  if redis.call('HINCRBY', counts_key, tenant, -1) <= 0 then
    redis.call('HDEL', counts_key, tenant)
  end
end

local function is_terminal(state)
  return state == 'completed' or state == 'failed' or state == 'cancelled'
end

-- A finished scan marked for webhooks is appended to its partition's outbox in
-- the same call that makes its end visible, so no delivery is ever lost.
local function to_outbox(scan_key, outbox_key, scan_id, tenant, state)
  if redis.call('HEXISTS', scan_key, F.webhook) == 1 then
    redis.call('XADD', outbox_key, '*', 'scan_id', scan_id, 'tenant', tenant, 'state', state)
  end
end
