-- ARGV: prefix, queue, op, id[, letter]. An operator's action on one pending task,
-- atomic with finding where it is:
--   find    where it is: returns {state, body, score}
--   run     a delayed task becomes ready now, next in its group
--   delete  a ready or delayed task leaves the queue (its idempotency key is freed)
--   cancel  a running task's lease is ended and the task goes to the dead letters as
--           `letter` (inspectable, re-drivable); its dispatcher finds the lease lost
--           at its next heartbeat and stops the run, and its settle is refused
-- Returns {state, body, score} of the task before the action ('missing' when it is not
-- pending); an action that does not apply to the state changes nothing (the caller
-- compares the state).
local q, op, id = ARGV[2], ARGV[3], ARGV[4]
local body = redis.call('HGET', k(q, 'tasks'), id)
if not body then return {'missing', '', ''} end
local state, score, member = 'ready', '', nil
local due = redis.call('ZSCORE', k(q, 'delayed'), id)
if due then
  state, score = 'delayed', due
else
  -- Members are `id|token`; the set holds only running tasks (bounded by concurrency).
  local cursor = '0'
  repeat
    local r = redis.call('ZSCAN', k(q, 'active'), cursor, 'MATCH', id .. '|*', 'COUNT', 1000)
    cursor = r[1]
    if #r[2] > 0 then member, score = r[2][1], r[2][2]; state = 'active' end
  until cursor == '0' or member
end
local found = {state, body, score}
if op == 'find' then return found end
local lane, group = route(q, id)
local ukey = ''
local ok, env = pcall(cjson.decode, body)
if ok and type(env) == 'table' and type(env['idempotency_key']) == 'string' then
  ukey = env['idempotency_key']
end
if op == 'run' and state == 'delayed' then
  redis.call('ZREM', k(q, 'delayed'), id)
  push_ready(q, id, lane, group, true)
elseif op == 'delete' and (state == 'ready' or state == 'delayed') then
  if state == 'delayed' then
    redis.call('ZREM', k(q, 'delayed'), id)
  else
    local list = ready_key(q, lane, group)
    local removed = redis.call('LREM', list, 1, id)
    if removed > 0 then
      if redis.call('LLEN', list) == 0 then redis.call('LREM', ring_key(q, lane), 0, group) end
    else
      redis.call('LREM', k(q, 'ready'), 1, id)
    end
  end
  redis.call('HDEL', k(q, 'tasks'), id)
  redis.call('HDEL', k(q, 'route'), id)
  release_unique(q, id, ukey)
  count(q, 'pending:' .. lane, -1)
  redis.call('HINCRBY', k(q, 'stats'), 'deleted', 1)
elseif op == 'cancel' and state == 'active' then
  redis.call('ZREM', k(q, 'active'), member)
  redis.call('HDEL', k(q, 'tasks'), id)
  release_unique(q, id, ukey)
  forget(q, id)
  redis.call('HSET', k(q, 'dead'), id, ARGV[5])
  redis.call('ZADD', k(q, 'dead_idx'), now_ms(), id)
  redis.call('HINCRBY', k(q, 'stats'), 'dead', 1)
  redis.call('HINCRBY', k(q, 'stats'), 'cancelled', 1)
end
return found
