-- Replace a call's token estimates with what the API reported it used, in
-- the bucket where they were reserved (while that bucket is still counted).
for _, bucket in ipairs({{input_key, input_delta}, {output_key, output_delta}}) do
  local key, delta = bucket[1], bucket[2]
  if delta ~= 0 and redis.call('HEXISTS', key, second) == 1 then
    redis.call('HINCRBY', key, second, delta)
  end
end
return 1
