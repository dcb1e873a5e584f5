local deadline = now_ms() + tonumber(ARGV[2])
local out = {}
local i = 3
while i <= #ARGV do
  out[#out+1] = redis.call('ZADD', k(ARGV[i], 'active'), 'XX', 'CH', deadline, ARGV[i+1])
  i = i + 2
end
return out
