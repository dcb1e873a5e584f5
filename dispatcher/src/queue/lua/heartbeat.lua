local deadline = now_ms() + tonumber(ARGV[2])
local out = {}
local i = 3
while i <= #ARGV do
  local active = k(ARGV[i], 'active')
  -- Held means still a member (a lease that was lost is not resurrected). Not ZADD's
  -- CH count: a deadline equal to the one already set (a beat in the millisecond of
  -- the reserve) changes nothing, yet the lease is held.
  if redis.call('ZSCORE', active, ARGV[i+1]) then
    redis.call('ZADD', active, 'XX', deadline, ARGV[i+1])
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
  i = i + 2
end
return out
