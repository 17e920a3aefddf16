-- Publish progress, only for the attempt that owns the scan.
if redis.call('HGET', scan_key, F.token) ~= token then
  return 0
end
emit(scan_key, events_key, history_key, scan_id, tenant, event, maxlen, scan_maxlen)
return 1
