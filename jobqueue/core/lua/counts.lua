#!lua flags=no-writes
--[[ counts: a consistent snapshot of the number of jobs in each state.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: none
Returns: {waiting, active, delayed, completed, failed, paused, limited_ms}
]]
--@include queue_keys.lua

local ready = redis.call('LLEN', K.wait) + redis.call('ZCARD', K.prio)
local paused = 0
if redis.call('HEXISTS', K.meta, 'paused') == 1 then
  paused = ready
  ready = 0
end
local limited = redis.call('PTTL', K.limited)
if limited < 0 then limited = 0 end
return {ready, redis.call('ZCARD', K.active), redis.call('ZCARD', K.delayed),
  redis.call('ZCARD', K.completed), redis.call('ZCARD', K.failed), paused, limited}
