-- Take ownership of a delivered entry: mark the scan active under a fresh
-- attempt token and publish the first progress event. Entries whose scan is
-- gone or already finished are acknowledged and skipped. A scan that has used
-- up its attempts without finishing (a worker crashing on it, say) is claimed
-- but reported exhausted, so the caller dead-letters it instead of running it.
-- KEYS: scan, events, scan events, requests stream, image
-- ARGV: scan_id, entry_id, consumer, token, now_ms, event_json, maxlen,
--       scan_maxlen, group, stage, pct, msg, history_ttl, max_attempts
-- Returns {'ok'|'exhausted', attempt, image|false} or {'skip', reason}
local state = redis.call('HGET', KEYS[1], 'state')
if not state or is_terminal(state) or redis.call('HGET', KEYS[1], 'entry_id') ~= ARGV[2] then
  -- Gone, finished, or a superseded entry (the scan was requeued since).
  redis.call('XACK', KEYS[4], ARGV[9], ARGV[2])
  redis.call('XDEL', KEYS[4], ARGV[2])
  return {'skip', state or 'missing'}
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
