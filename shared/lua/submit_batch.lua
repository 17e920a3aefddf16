-- Accept a batch: every scan as submit.lua accepts one (image, hash, request entry
-- or schedule, first event), plus the batch's hash, scan list and first progress
-- event. Every check comes before the first write, so a refused batch writes nothing.
-- Returns {'new'} or {'duplicate', batch_id, body_hash}
local replay = body_hash ~= '' and replay_of(idempotency_key)
if replay then
  return replay
end
local n = #scans_key / 3
if n < 1 or #items ~= n * 6 or n ~= math.floor(n) then
  return redis.error_reply('ERR submit_batch: ' .. #scans_key .. ' keys for ' .. #items .. ' args')
end
if redis.call('EXISTS', batch_key) == 1 then
  return redis.error_reply('EXISTS batch ' .. batch_id)
end
for i = 0, n - 1 do
  if redis.call('EXISTS', scans_key[i * 3 + 1]) == 1 then
    return redis.error_reply('EXISTS scan ' .. items[i * 6 + 1])
  end
end
if body_hash ~= '' then
  redis.call('SET', idempotency_key, batch_id .. ' ' .. body_hash, 'EX', idempotency_ttl)
end
local streams = {high = stream_high_key, normal = stream_normal_key, low = stream_low_key}
local ids = {}
for i = 0, n - 1 do
  local scan_key, history_key, image_key = scans_key[i * 3 + 1], scans_key[i * 3 + 2],
    scans_key[i * 3 + 3]
  local scan_id, priority, job, due_ms, event, image = items[i * 6 + 1], items[i * 6 + 2],
    items[i * 6 + 3], tonumber(items[i * 6 + 4]), items[i * 6 + 5], items[i * 6 + 6]
  ids[i + 1] = scan_id
  accept_scan(scan_key, history_key, image_key, streams[priority], delayed_key, events_key,
    scan_id, tenant, priority, job, due_ms, event, image, batch_id, webhook, now_ms, image_ttl,
    history_ttl, maxlen, scan_maxlen)
end
redis.call('RPUSH', batch_scans_key, unpack(ids))
list_scans({scan_index_key, tenant_scan_index_key}, now_ms, ids, index_horizon_ms, index_max)
redis.call('HSET', batch_key, 'total', n, 'tenant', tenant, 'created_ms', now_ms,
  'completed', 0, 'failed', 0, 'cancelled', 0)
if webhook == 1 then
  redis.call('HSET', batch_key, 'webhook', 1)
end
local id = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'batch_id', batch_id,
  'event', batch_event)
redis.call('XADD', batch_events_key, id, 'event', batch_event)
for _, key in ipairs({batch_key, batch_events_key, batch_scans_key}) do
  redis.call('EXPIRE', key, history_ttl)
end
return {'new'}
