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

-- A scan of a batch became terminal as `state` (delta 1), or left `failed` for a
-- replay (delta -1): count it in the batch's hash and append to the batch's stream
-- (and, under the same id, to the partition's events stream, named by `batch_id`
-- and no tenant, so notifiers route it and tenant streams skip it) the scan's
-- event, then the batch's progress; the last scan to end also ends the batch.
-- The progress events hold only numbers, so they are encoded here, where the
-- counts of this moment are known. Returns the batch's end state ('finished' or
-- 'cancelled') when this call ended it, else nil.
local function batch_note(batch_key, batch_events_key, batch_scans_key, events_key, batch_id,
                          state, delta, scan_event, now_ms, maxlen, ttl)
  if batch_id == '' or redis.call('EXISTS', batch_key) == 0 then
    return
  end
  local function add(ev)
    local id = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
      'batch_id', batch_id, 'event', ev)
    redis.call('XADD', batch_events_key, id, 'event', ev)
  end
  redis.call('HINCRBY', batch_key, state, delta)
  local total, completed, failed, cancelled, finished_ms, stopped = unpack(redis.call('HMGET',
    batch_key, 'total', 'completed', 'failed', 'cancelled', 'finished_ms', 'cancelled_ms'))
  total, completed = tonumber(total), tonumber(completed or '0')
  failed, cancelled = tonumber(failed or '0'), tonumber(cancelled or '0')
  local ended = completed + failed + cancelled
  local ended_as = nil
  local body = {batch_id = batch_id, total = total, at_ms = now_ms, state = 'running',
    progress = math.floor(ended * 100 / total),
    counts = {completed = completed, failed = failed, cancelled = cancelled,
      pending = total - ended}}
  if scan_event ~= '' then
    add(scan_event)
  end
  body.type = 'batch'
  add(cjson.encode(body))
  if ended == total and not finished_ms then
    redis.call('HSET', batch_key, 'finished_ms', now_ms)
    body.type = 'batch.completed'
    body.state = stopped and 'cancelled' or 'finished'
    add(cjson.encode(body))
    ended_as = body.state
  elseif ended < total and finished_ms then
    redis.call('HDEL', batch_key, 'finished_ms', 'aggregate')
  end
  for _, key in ipairs({batch_key, batch_events_key, batch_scans_key}) do
    redis.call('EXPIRE', key, ttl)
  end
  return ended_as
end

-- Enter new scans in the listings (GET /api/scans), scored by creation time; each
-- write trims them by age and by size, and they expire once none of their scans can
-- still exist.
local function list_scans(list_keys, now_ms, scan_ids, horizon_ms, index_max)
  local members = {}
  for i, scan_id in ipairs(scan_ids) do
    members[2 * i - 1] = now_ms
    members[2 * i] = scan_id
  end
  for _, list_key in ipairs(list_keys) do
    redis.call('ZADD', list_key, unpack(members))
    redis.call('ZREMRANGEBYSCORE', list_key, '-inf', '(' .. (now_ms - horizon_ms))
    redis.call('ZREMRANGEBYRANK', list_key, 0, -(index_max + 1))
    redis.call('PEXPIRE', list_key, horizon_ms)
  end
end

-- A finished scan marked for webhooks (`webhook`: its hash's field, read by the
-- caller with the fields it needs anyway) is appended to its partition's outbox
-- in the same call that makes its end visible, so no delivery is ever lost.
local function to_outbox(webhook, outbox_key, scan_id, tenant, state)
  if webhook then
    redis.call('XADD', outbox_key, '*', 'scan_id', scan_id, 'tenant', tenant, 'state', state)
  end
end

-- A batch that just ended (`state`: finished or cancelled) and was marked for
-- webhooks at submit is appended to the outbox of its partition (its scans' too),
-- in the call that ended it: one `batch.completed` per end, never lost.
local function batch_to_outbox(batch_key, outbox_key, batch_id, state)
  local tenant, webhook = unpack(redis.call('HMGET', batch_key, 'tenant', 'webhook'))
  if webhook then
    redis.call('XADD', outbox_key, '*', 'batch_id', batch_id, 'tenant', tenant, 'state', state)
  end
end

-- Accept one scan (submit.lua, and submit_batch.lua for each of its scans): store
-- its image, create its hash, queue its request entry (or schedule it when
-- due_ms > 0) and publish its first event. `batch_id` is '' for a scan of no batch.
-- Returns the request's entry ID, '' when scheduled.
local function accept_scan(scan_key, history_key, image_key, stream_key, delayed_key,
                           events_key, scan_id, tenant, priority, job, due_ms, event, image,
                           batch_id, webhook, now_ms, image_ttl, history_ttl, maxlen,
                           scan_maxlen)
  if image ~= '' then
    redis.call('SET', image_key, image, 'EX', image_ttl)
  end
  local state, entry_id, when_field, when = 'scheduled', '', F.due_ms, due_ms
  if due_ms > 0 then
    redis.call('ZADD', delayed_key, due_ms, scan_id)
  else
    entry_id = redis.call('XADD', stream_key, '*', 'scan_id', scan_id, 'attempts', 0, 'job', job)
    state, when_field, when = 'queued', F.entry_id, entry_id
  end
  redis.call('HSET', scan_key, F.state, state, F.job, job, F.priority, priority,
    F.tenant, tenant, F.attempts, 0, F.created_ms, now_ms, when_field, when)
  if batch_id ~= '' then
    redis.call('HSET', scan_key, F.batch, batch_id)
  end
  if webhook == 1 then
    redis.call('HSET', scan_key, F.webhook, 1)
  end
  redis.call('EXPIRE', scan_key, history_ttl)
  emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
  redis.call('EXPIRE', history_key, history_ttl)
  return entry_id
end

-- What an earlier request with the same Idempotency-Key created (its id and body
-- hash, stored as "<id> <body_hash>"): the {'duplicate', id, body_hash} reply, or nil.
local function replay_of(idempotency_key)
  local seen = redis.call('GET', idempotency_key)
  if seen then
    local sep = string.find(seen, ' ', 1, true)
    return {'duplicate', string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)}
  end
end
