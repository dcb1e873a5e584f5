local last = tonumber(redis.call('HGET', P .. ':schedules', ARGV[2]) or '0')
local at = tonumber(ARGV[3])
if at <= last then return 0 end
redis.call('HSET', P .. ':schedules', ARGV[2], at)
enqueue(ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], now_ms(), ARGV[9], ARGV[10])
return 1
