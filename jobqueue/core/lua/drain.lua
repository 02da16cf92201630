#!lua
--[[ drain: remove waiting (including prioritized and paused) and delayed jobs, a batch per
call. Active and finished jobs are kept.
KEYS: wait prio priorities delayed cancels events costs
ARGV:
  base    '<prefix>:{<queue>}:'
  maxlen  cap of the event stream
  batch   most jobs removed by this call
EVENTS: removed failed waiting
Returns: {removed, left}: jobs removed by this call (one `removed` event each), and waiting +
delayed jobs left (call again while both are > 0).
]]
--@include common.lua
--@include jobs.lua

local limit = tonumber(A.batch)
local now = now_ms()
local removed = 0

local function drop_pairs(flat, prev)
  for i = 1, #flat, 2 do
    forget_job(flat[i], prev, 'drained', now)
    removed = removed + 1
  end
end

local ids = redis.call('LPOP', K.wait, limit)
if ids then
  for i = 1, #ids do
    forget_job(ids[i], 'waiting', 'drained', now)
    removed = removed + 1
  end
end
if removed < limit then drop_pairs(redis.call('ZPOPMIN', K.prio, limit - removed), 'waiting') end
if removed < limit then
  drop_pairs(redis.call('ZPOPMIN', K.delayed, limit - removed), 'delayed')
end
local left = redis.call('LLEN', K.wait) + redis.call('ZCARD', K.prio)
  + redis.call('ZCARD', K.delayed)
return {removed, left}
