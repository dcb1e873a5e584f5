local q = ARGV[2]
local max = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local now = now_ms()
local delayed = k(q, 'delayed')
local ready = k(q, 'ready')
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('ZREM', delayed, unpack(due))
  redis.call('LPUSH', ready, unpack(due))
end
local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local next_due = '-1'
if #nxt > 0 then next_due = nxt[2] end
if redis.call('SISMEMBER', P .. ':paused', q) == 1 then
  return {'paused', next_due, '0'}
end
local out = {'ok', next_due, '0'}
if max < 1 then return out end
local ids = redis.call('RPOP', ready, max)
if ids then
  local bodies = redis.call('HMGET', k(q, 'tasks'), unpack(ids))
  local seq = redis.call('INCR', P .. ':seq')
  local z = {}
  for i, id in ipairs(ids) do
    local body = bodies[i]
    if body then
      local member = id .. '|' .. seq .. '.' .. i
      z[#z+1] = now + lease
      z[#z+1] = member
      out[#out+1] = member
      out[#out+1] = body
    end
  end
  if #z > 0 then redis.call('ZADD', k(q, 'active'), unpack(z)) end
end
if redis.call('LLEN', ready) > 0 then
  out[3] = '1'
  -- Work remains: wake another idle dispatcher to share it.
  wake(q)
end
return out
