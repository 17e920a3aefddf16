-- Take ownership of a delivered entry: mark the scan active under a fresh
-- attempt token and publish the first progress event. Entries whose scan is
-- gone or already finished are acknowledged and skipped. A scan that has used
-- up its attempts without finishing (a worker crashing on it, say) is claimed
-- but reported exhausted, so the caller dead-letters it instead of running it.
-- A scan whose tenant is at its cap of active scans is deferred: moved to the
-- schedule for a short while, so other tenants' scans get the slot.
-- KEYS: scan, events, scan events, requests stream, image, tenant counts, delayed
-- ARGV: scan_id, entry_id, consumer, token, now_ms, event_json, maxlen,
--       scan_maxlen, group, stage, pct, msg, history_ttl, max_attempts,
--       tenant_cap (0: none), defer_ms, deferred_event_json, deferred_msg
-- Returns {'ok'|'exhausted', attempt, image|false} or {'skip', reason} or {'deferred'}
local state = redis.call('HGET', KEYS[1], 'state')
if not state or is_terminal(state) or redis.call('HGET', KEYS[1], 'entry_id') ~= ARGV[2] then
  -- Gone, finished, or a superseded entry (the scan was requeued since).
  redis.call('XACK', KEYS[4], ARGV[9], ARGV[2])
  redis.call('XDEL', KEYS[4], ARGV[2])
  return {'skip', state or 'missing'}
end
if state ~= 'active' then
  local tenant = redis.call('HGET', KEYS[1], 'tenant') or ''
  local cap = tonumber(ARGV[15])
  if cap > 0 and tonumber(redis.call('HGET', KEYS[6], tenant) or '0') >= cap then
    redis.call('XACK', KEYS[4], ARGV[9], ARGV[2])
    redis.call('XDEL', KEYS[4], ARGV[2])
    redis.call('ZADD', KEYS[7], tonumber(ARGV[5]) + tonumber(ARGV[16]), ARGV[1])
    local was = redis.call('HGET', KEYS[1], 'msg')
    redis.call('HSET', KEYS[1], 'state', 'scheduled', 'stage', 'scheduled',
      'msg', ARGV[18], 'updated_ms', ARGV[5])
    redis.call('HDEL', KEYS[1], 'entry_id')
    if was ~= ARGV[18] then
      local attempts = redis.call('HGET', KEYS[1], 'attempts')
      emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[17], attempts), ARGV[7],
        ARGV[8], ARGV[13])
    end
    return {'deferred'}
  end
  redis.call('HINCRBY', KEYS[6], tenant, 1)
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local verdict = 'ok'
if attempts >= tonumber(ARGV[14]) then
  verdict = 'exhausted'
else
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
redis.call('HSET', KEYS[1], 'state', 'active', 'token', ARGV[4], 'owner', ARGV[3],
  'stream', KEYS[4], 'stage', ARGV[10], 'pct', ARGV[11], 'msg', ARGV[12],
  'updated_ms', ARGV[5])
if verdict == 'exhausted' then
  return {verdict, attempts, false}
end
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[6], attempts), ARGV[7], ARGV[8], ARGV[13])
return {verdict, attempts, redis.call('GET', KEYS[5])}
