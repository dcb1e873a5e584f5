local q = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local holder = redis.call('HGET', k(q, 'unique'), ARGV[i])
  if holder and redis.call('HEXISTS', k(q, 'tasks'), holder) == 1 then
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
