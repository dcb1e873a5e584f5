local now = now_ms()
local dead_max, dead_ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
-- The dead-letter policy (docs/QUEUE.md): letters older than the TTL expire, and past
-- the cap the oldest go. Bounded work per call (a backlog shrinks over several calls).
local function trim_dead(q)
  local gone = {}
  if dead_ttl > 0 then
    gone = redis.call('ZRANGEBYSCORE', k(q, 'dead_idx'), '-inf', now - dead_ttl, 'LIMIT', 0, 100)
  end
  if dead_max > 0 then
    local over = redis.call('ZCARD', k(q, 'dead_idx')) - #gone - dead_max
    if over > 0 then
      gone = redis.call('ZRANGE', k(q, 'dead_idx'), 0, #gone + math.min(over, 1000) - 1)
    end
  end
  if #gone > 0 then
    redis.call('HDEL', k(q, 'dead'), unpack(gone))
    redis.call('ZREM', k(q, 'dead_idx'), unpack(gone))
    redis.call('HINCRBY', k(q, 'stats'), 'dead_dropped', #gone)
  end
end
local out = {}
local i = 4
while i <= #ARGV do
  local op, q, member, id = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  i = i + 4
  local held = redis.call('ZREM', k(q, 'active'), member) == 1
  if op == 'ack' then
    local ukey, n = ARGV[i], tonumber(ARGV[i+1])
    i = i + 2
    if held then
      redis.call('HDEL', k(q, 'tasks'), id)
      release_unique(q, id, ukey)
      forget(q, id)
      redis.call('HINCRBY', k(q, 'stats'), 'processed', 1)
    end
    for _ = 1, n do
      if held then
        enqueue(ARGV[i], ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3]), ARGV[i+4], now,
          ARGV[i+5], ARGV[i+6])
      end
      i = i + 7
    end
  elseif op == 'retry' then
    local body, due = ARGV[i], tonumber(ARGV[i+1])
    i = i + 2
    if held then
      redis.call('HSET', k(q, 'tasks'), id, body)
      local lane, group = route(q, id)
      count(q, 'active:' .. lane, -1)
      if due > now then
        redis.call('ZADD', k(q, 'delayed'), due, id)
      else
        push_ready(q, id, lane, group, false)
      end
      redis.call('HINCRBY', k(q, 'stats'), 'failed', 1)
      redis.call('HINCRBY', k(q, 'stats'), 'retried', 1)
    end
  elseif op == 'dead' then
    local ukey, letter = ARGV[i], ARGV[i+1]
    i = i + 2
    if held then
      redis.call('HDEL', k(q, 'tasks'), id)
      release_unique(q, id, ukey)
      forget(q, id)
      redis.call('HSET', k(q, 'dead'), id, letter)
      redis.call('ZADD', k(q, 'dead_idx'), now, id)
      redis.call('HINCRBY', k(q, 'stats'), 'failed', 1)
      redis.call('HINCRBY', k(q, 'stats'), 'dead', 1)
      trim_dead(q)
    end
  elseif op == 'requeue' then
    if held then
      local lane, group = route(q, id)
      count(q, 'active:' .. lane, -1)
      push_ready(q, id, lane, group, true)
    end
  else
    return redis.error_reply('settle: unknown operation ' .. tostring(op))
  end
  out[#out+1] = held and 1 or 0
end
return out
