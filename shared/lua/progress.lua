-- Record and publish progress, only for the attempt that owns the scan.
-- KEYS: scan, events, scan events
-- ARGV: scan_id, token, now_ms, stage, pct, msg, event_json, maxlen, scan_maxlen, history_ttl
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'stage', ARGV[4], 'pct', ARGV[5], 'msg', ARGV[6],
  'updated_ms', ARGV[3])
local attempt = redis.call('HGET', KEYS[1], 'attempts')
emit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], with_attempt(ARGV[7], attempt), ARGV[8], ARGV[9], ARGV[10])
return 1
