-- Keep this consumer's in-flight entries from looking idle, so a long scan is
-- never reclaimed; entries another consumer has taken over are left alone.
-- KEYS: requests stream
-- ARGV: group, consumer, entry ids...
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
