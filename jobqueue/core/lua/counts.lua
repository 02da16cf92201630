#!lua flags=no-writes
--[[ counts: a consistent snapshot of the number of jobs in each state.
KEYS: wait prio active delayed completed failed meta limited waiting_children groups
ARGV:
EVENTS: none
Returns: {waiting, active, delayed, completed, failed, paused, limited_ms, waiting_children};
`paused` counts the ready jobs held back because the queue is paused (they are not in `waiting`
then); `waiting_children` the flow parents waiting for their children.
]]

-- grouped jobs wait in their groups' zsets, and each group with jobs ready has one token in
-- wait/prio (groups.lua: `n` grouped jobs waiting, `t` tokens)
local g = redis.call('HMGET', K.groups, 'n', 't')
local ready = redis.call('LLEN', K.wait) + redis.call('ZCARD', K.prio)
  + tonumber(g[1] or '0') - tonumber(g[2] or '0')
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
