local q = ARGV[2]
local lease = tonumber(ARGV[3])
local now = now_ms()
local active = k(q, 'active')
local expired = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
if #expired == 0 then return out end
local seq = redis.call('INCR', P .. ':seq')
for i, member in ipairs(expired) do
  redis.call('ZREM', active, member)
  local id = string.match(member, '^(.*)|')
  local body = id and redis.call('HGET', k(q, 'tasks'), id)
  if body then
    local fresh = id .. '|r' .. seq .. '.' .. i
    redis.call('ZADD', active, now + lease, fresh)
    out[#out+1] = fresh
    out[#out+1] = body
  end
end
return out
