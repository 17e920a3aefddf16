-- Keep this consumer's in-flight entries from looking idle, so a long scan is
-- never reclaimed; entries another consumer has taken over are left alone.
local renewed = 0
for _, id in ipairs(entry_ids) do
  local p = redis.call('XPENDING', stream_key, group, id, id, 1)
  if p[1] and p[1][2] == consumer then
    redis.call('XCLAIM', stream_key, group, consumer, 0, id, 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
