local now = now_ms()
local out = {}
local i = 2
while i <= #ARGV do
  local holder = enqueue(ARGV[i], ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3]), ARGV[i+4], now,
    ARGV[i+5], ARGV[i+6])
  out[#out+1] = holder or ''
  i = i + 7
end
return out
