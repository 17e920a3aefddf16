-- Replace a call's token estimates with what the API reported it used, in
-- the bucket where they were reserved (while that bucket is still counted).
-- KEYS: input buckets, output buckets
-- ARGV: reserved_second, input_delta, output_delta
for i, key in ipairs(KEYS) do
  local delta = tonumber(ARGV[i + 1])
  if delta ~= 0 and redis.call('HEXISTS', key, ARGV[1]) == 1 then
    redis.call('HINCRBY', key, ARGV[1], delta)
  end
end
return 1
