local q = ARGV[2]
local out = {redis.call('LLEN', k(q, 'ready'))}
local counters = redis.call('HGETALL', k(q, 'lanes'))
local c = {}
for i = 1, #counters, 2 do c[counters[i]] = math.max(0, tonumber(counters[i+1]) or 0) end
for lane = 1, LANES do
  local ready = 0
  for _, g in ipairs(redis.call('LRANGE', ring_key(q, lane), 0, -1)) do
    ready = ready + redis.call('LLEN', ready_key(q, lane, g))
  end
  out[#out+1] = ready
  out[#out+1] = c['pending:' .. lane] or 0
  out[#out+1] = c['active:' .. lane] or 0
end
return out
