-- ARGV: prefix, queue, state ('ready' | 'delayed' | 'active' | 'dead'), offset, count.
-- One page of a state's tasks in the order they will be served (ready: lane by lane,
-- each lane's groups in ring order, each group oldest first; delayed: soonest due;
-- active: soonest lease end; dead: newest first). Reads only the page, plus one LLEN
-- per ready list to place the offset: never a scan of the queue's tasks.
-- Returns {total, (id, body, score)*}; score is the due time, the lease deadline or
-- the dead time in ms ('' for ready), body '' when it is gone.
local q, state = ARGV[2], ARGV[3]
local offset, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {0}
local ids, scores = {}, {}
if state == 'ready' then
  local lists = {k(q, 'ready')}
  for lane = 1, LANES do
    local groups = redis.call('LRANGE', ring_key(q, lane), 0, -1)
    -- The ring serves its right end next.
    for i = #groups, 1, -1 do lists[#lists+1] = ready_key(q, lane, groups[i]) end
  end
  local skip, total = offset, 0
  for _, list in ipairs(lists) do
    local n = redis.call('LLEN', list)
    total = total + n
    if #ids < count and n > 0 then
      if skip >= n then
        skip = skip - n
      else
        -- Lists pop from the right: the next out is index -1.
        local first, last = -(skip + 1), -math.min(n, skip + count - #ids)
        local got = redis.call('LRANGE', list, last, first)
        for j = #got, 1, -1 do ids[#ids+1] = got[j]; scores[#scores+1] = '' end
        skip = 0
      end
    end
  end
  out[1] = total
elseif state == 'delayed' or state == 'active' then
  local key = k(q, state)
  out[1] = redis.call('ZCARD', key)
  local got = redis.call('ZRANGE', key, offset, offset + count - 1, 'WITHSCORES')
  for j = 1, #got, 2 do
    local id = got[j]
    if state == 'active' then id = string.match(id, '^([^|]*)') end
    ids[#ids+1] = id
    scores[#scores+1] = got[j+1]
  end
elseif state == 'dead' then
  out[1] = redis.call('ZCARD', k(q, 'dead_idx'))
  local got = redis.call('ZREVRANGE', k(q, 'dead_idx'), offset, offset + count - 1, 'WITHSCORES')
  for j = 1, #got, 2 do ids[#ids+1] = got[j]; scores[#scores+1] = got[j+1] end
else
  return redis.error_reply('unknown state ' .. state)
end
if #ids > 0 then
  local bodies = redis.call('HMGET', k(q, state == 'dead' and 'dead' or 'tasks'), unpack(ids))
  for j = 1, #ids do
    out[#out+1] = ids[j]
    out[#out+1] = bodies[j] or ''
    out[#out+1] = scores[j]
  end
end
return out
