-- A scan's request has gone into a provider Message Batch (or is about to): its
-- stream entry is acknowledged, so no analyzer reclaims and runs it again, while
-- the attempt keeps its token; the batch's record (fleet-wide) names the scan,
-- and the attempt ends through finish/retry like any other. Only the attempt
-- holding the token may park it (a cancelled scan is left out of the batch).
if redis.call('HGET', scan_key, F.token) ~= token then
  return 0
end
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
return 1
