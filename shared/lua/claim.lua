-- Take ownership of a delivered entry: mark the scan active under a fresh
-- attempt token and publish the first progress event. Entries whose scan is
-- gone or already finished are acknowledged and skipped.
-- KEYS: scan, events, scan events, requests stream, image
-- ARGV: scan_id, entry_id, consumer, token, now_ms, event_json, maxlen,
--       scan_maxlen, group, stage, pct, msg, history_ttl
-- Returns {'ok', attempt, image|false} or {'skip', reason}
local state = redis.call('HGET', KEYS[1], 'state')
if not state or is_terminal(state) then
  redis.call('XACK', KEYS[4], ARGV[9], ARGV[2])
  redis.call('XDEL', KEYS[4], ARGV[2])
  return {'skip', state or 'missing'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'active', 'token', ARGV[4], 'owner', ARGV[3],
  'entry_id', ARGV[2], 'stream', KEYS[4],
  'stage', ARGV[10], 'pct', ARGV[11], 'msg', ARGV[12], 'updated_ms', ARGV[5])
emit(KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[6], attempt), ARGV[7], ARGV[8], ARGV[13])
local image = redis.call('GET', KEYS[5])
return {'ok', attempt, image}
