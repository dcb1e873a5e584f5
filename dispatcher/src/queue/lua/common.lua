local P = ARGV[1]
local function k(q, part) return P .. ':q:' .. q .. ':' .. part end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local woken = {}
local function wake(q)
  if not woken[q] then
    woken[q] = true
    redis.call('LPUSH', k(q, 'wake'), '1')
    redis.call('LTRIM', k(q, 'wake'), 0, 0)
  end
end
-- Lanes, served in this order (docs/QUEUE.md, "Order and fairness"): 1 live finish,
-- 2 live start, 3 normal, 4 backfill finish, 5 backfill start. Starts (2 and 5) are
-- admitted only while fewer than the in-flight bound of started units are unfinished.
local LANES = 5
local NORMAL = 3
local BACKFILL_START = 5
local function ready_key(q, lane, group) return k(q, 'ready:' .. lane .. ':' .. group) end
local function ring_key(q, lane) return k(q, 'ring:' .. lane) end
-- The lane and fairness group of task `id` (normal and anonymous unless recorded).
local function route(q, id)
  local r = redis.call('HGET', k(q, 'route'), id)
  if not r then return NORMAL, '' end
  local lane, group = string.match(r, '^(%d+)|(.*)$')
  if not lane then return NORMAL, '' end
  return tonumber(lane), group
end
local function count(q, field, by) redis.call('HINCRBY', k(q, 'lanes'), field, by) end
-- Makes `id` ready: at the back of its group's list, or (`front`) handed back to be
-- next. The lane's ring holds exactly the groups whose list is not empty.
local function push_ready(q, id, lane, group, front)
  local list = ready_key(q, lane, group)
  local n
  if front then n = redis.call('RPUSH', list, id) else n = redis.call('LPUSH', list, id) end
  if n == 1 then
    if front then
      redis.call('RPUSH', ring_key(q, lane), group)
    else
      redis.call('LPUSH', ring_key(q, lane), group)
    end
  end
  wake(q)
end
-- Returns the id of the pending task holding `ukey`, or false once enqueued.
local function enqueue(q, id, body, due, ukey, now, lane, group)
  lane = tonumber(lane) or NORMAL
  if lane < 1 or lane > LANES then lane = NORMAL end
  group = group or ''
  if ukey ~= '' then
    local holder = redis.call('HGET', k(q, 'unique'), ukey)
    if holder and redis.call('HEXISTS', k(q, 'tasks'), holder) == 1 then
      return holder
    end
    redis.call('HSET', k(q, 'unique'), ukey, id)
  end
  redis.call('SADD', P .. ':queues', q)
  redis.call('HSET', k(q, 'tasks'), id, body)
  if lane ~= NORMAL or group ~= '' then
    redis.call('HSET', k(q, 'route'), id, lane .. '|' .. group)
  end
  count(q, 'pending:' .. lane, 1)
  if due > now then
    redis.call('ZADD', k(q, 'delayed'), due, id)
  else
    push_ready(q, id, lane, group, false)
  end
  redis.call('HINCRBY', k(q, 'stats'), 'enqueued', 1)
  return false
end
local function release_unique(q, id, ukey)
  if ukey ~= '' and redis.call('HGET', k(q, 'unique'), ukey) == id then
    redis.call('HDEL', k(q, 'unique'), ukey)
  end
end
-- Task `id` leaves the queue for good (acknowledged or dead-lettered).
local function forget(q, id)
  local lane = route(q, id)
  redis.call('HDEL', k(q, 'route'), id)
  count(q, 'pending:' .. lane, -1)
  count(q, 'active:' .. lane, -1)
  -- It may have been holding a start back (the in-flight bound): let an idle
  -- dispatcher look again.
  if lane ~= NORMAL and (redis.call('LLEN', ring_key(q, 2)) > 0
      or redis.call('LLEN', ring_key(q, BACKFILL_START)) > 0) then
    wake(q)
  end
end
