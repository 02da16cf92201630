#!lua flags=no-writes
--[[ scheduler_due: the schedulers whose next run is due, on the Redis clock.
KEYS: schedulers
ARGV:
  limit     at most this many due schedulers
EVENTS: none
Returns: {now_ms, wait_ms, id1, next1, id2, next2, ...}: wait_ms is the time until the first
scheduler that is not due yet (-1 when there is none).
]]
--@include common.lua

local now = now_ms()
local out = {now, -1}
local due = redis.call('ZRANGEBYSCORE', K.schedulers, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(A.limit))
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
end
local later = redis.call('ZRANGEBYSCORE', K.schedulers, '(' .. now, '+inf', 'WITHSCORES',
  'LIMIT', 0, 1)
if #later > 0 then out[2] = tonumber(later[2]) - now end
return out
