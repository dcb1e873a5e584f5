local q, id = ARGV[2], ARGV[3]
if redis.call('HEXISTS', k(q, 'dead'), id) == 0 then return 'missing' end
local holder = enqueue(q, id, ARGV[4], 0, ARGV[5], now_ms(), ARGV[6], ARGV[7])
if holder then return holder end
redis.call('HDEL', k(q, 'dead'), id)
redis.call('ZREM', k(q, 'dead_idx'), id)
return ''
