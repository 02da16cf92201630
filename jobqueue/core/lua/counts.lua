#!lua flags=no-writes
--[[ counts: a consistent snapshot of the number of jobs in each state.
KEYS: wait prio active delayed completed failed meta limited waiting_children
ARGV:
EVENTS: none
Returns: {waiting, active, delayed, completed, failed, paused, limited_ms, waiting_children};
`paused` counts the ready jobs held back because the queue is paused (they are not in `waiting`
then); `waiting_children` the flow parents waiting for their children.
]]

local ready = redis.call('LLEN', K.wait) + redis.call('ZCARD', K.prio)
local paused = 0
if redis.call('HEXISTS', K.meta, 'paused') == 1 then
  paused = ready
  ready = 0
end
local limited = redis.call('PTTL', K.limited)
if limited < 0 then limited = 0 end
return {ready, redis.call('ZCARD', K.active), redis.call('ZCARD', K.delayed),
  redis.call('ZCARD', K.completed), redis.call('ZCARD', K.failed), paused, limited,
  redis.call('ZCARD', K.waiting_children)}
