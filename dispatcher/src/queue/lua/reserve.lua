local q = ARGV[2]
local max = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
-- Most started units (live or backfill) unfinished before any start waits; 0: no bound.
local bound = tonumber(ARGV[5])
local now = now_ms()
local delayed = k(q, 'delayed')
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('ZREM', delayed, unpack(due))
  for _, id in ipairs(due) do
    local lane, group = route(q, id)
    push_ready(q, id, lane, group, false)
  end
end
-- Ready tasks a dispatcher from before the lanes left behind go to their lanes.
local legacy = redis.call('RPOP', k(q, 'ready'), 1000)
if legacy then
  for _, id in ipairs(legacy) do
    local lane, group = route(q, id)
    count(q, 'pending:' .. lane, 1)
    push_ready(q, id, lane, group, false)
  end
end
local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local next_due = '-1'
if #nxt > 0 then next_due = nxt[2] end
if redis.call('SISMEMBER', P .. ':paused', q) == 1 then
  return {'paused', next_due, '0'}
end
-- Nothing pending at all: whatever the counters say is drift (an upgrade, a key deleted
-- by hand); start them afresh.
if redis.call('HLEN', k(q, 'tasks')) == 0 then redis.call('DEL', k(q, 'lanes')) end
-- Units in flight: finish tasks pending (ready, delayed or running), start tasks running.
local c = redis.call('HMGET', k(q, 'lanes'), 'pending:1', 'active:2', 'pending:4', 'active:5')
local in_flight = 0
for _, v in ipairs(c) do in_flight = in_flight + math.max(0, tonumber(v) or 0) end
-- Every start waits for room under the bound; live starts come first when there is.
local function admitted(lane)
  return (lane ~= 2 and lane ~= BACKFILL_START) or bound <= 0 or in_flight < bound
end
local out = {'ok', next_due, '0'}
if max < 1 then return out end
local ids, lanes = {}, {}
for lane = 1, LANES do
  local ring = ring_key(q, lane)
  while #ids < max and admitted(lane) do
    -- Round robin over the lane's groups: the one served moves to the back.
    local g = redis.call('RPOPLPUSH', ring, ring)
    if not g then break end
    local list = ready_key(q, lane, g)
    local id = redis.call('RPOP', list)
    if redis.call('LLEN', list) == 0 then redis.call('LREM', ring, 1, g) end
    if id then
      ids[#ids+1] = id
      lanes[#lanes+1] = lane
      if lane == 2 or lane == BACKFILL_START then in_flight = in_flight + 1 end
    end
  end
end
if #ids > 0 then
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
      count(q, 'active:' .. lanes[i], 1)
    else
      -- Its body is gone (deleted by hand): nothing to run, nothing pending.
      redis.call('HDEL', k(q, 'route'), id)
      count(q, 'pending:' .. lanes[i], -1)
    end
  end
  if #z > 0 then redis.call('ZADD', k(q, 'active'), unpack(z)) end
end
for lane = 1, LANES do
  if admitted(lane) and redis.call('LLEN', ring_key(q, lane)) > 0 then
    out[3] = '1'
    -- Work remains: wake another idle dispatcher to share it.
    wake(q)
    break
  end
end
return out
