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
-- Returns the id of the pending task holding `ukey`, or false once enqueued.
local function enqueue(q, id, body, due, ukey, now)
  if ukey ~= '' then
    local holder = redis.call('HGET', k(q, 'unique'), ukey)
    if holder and redis.call('HEXISTS', k(q, 'tasks'), holder) == 1 then
      return holder
    end
    redis.call('HSET', k(q, 'unique'), ukey, id)
  end
  redis.call('SADD', P .. ':queues', q)
  redis.call('HSET', k(q, 'tasks'), id, body)
  if due > now then
    redis.call('ZADD', k(q, 'delayed'), due, id)
  else
    redis.call('LPUSH', k(q, 'ready'), id)
    wake(q)
  end
  redis.call('HINCRBY', k(q, 'stats'), 'enqueued', 1)
  return false
end
local function release_unique(q, id, ukey)
  if ukey ~= '' and redis.call('HGET', k(q, 'unique'), ukey) == id then
    redis.call('HDEL', k(q, 'unique'), ukey)
  end
end
