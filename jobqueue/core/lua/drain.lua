#!lua flags=allow-oom
--[[ drain: remove waiting (including prioritized and paused) and delayed jobs, a batch per
call. Active and finished jobs are kept.
KEYS: wait prio priorities delayed cancels events costs groups id_counter jobs
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
    if grp_is_token(flat[i]) then
      grp_token_popped(flat[i])
    else
      forget_job(flat[i], prev, 'drained', now)
      removed = removed + 1
    end
  end
end

-- grouped jobs first: once every group is empty no token is left in wait/prio
local groups = grp_waiting_groups(limit)
for g = 1, #groups do
  if removed >= limit then break end
  local ids = redis.call('ZRANGE', group_key(A.base, groups[g]), 0, limit - removed - 1)
  for i = 1, #ids do
    grp_detach(ids[i], groups[g])
    forget_job(ids[i], 'waiting', 'drained', now)
    removed = removed + 1
  end
end
if removed < limit then
  local ids = redis.call('LPOP', K.wait, limit - removed)
  if ids then
    for i = 1, #ids do
      if grp_is_token(ids[i]) then
        grp_token_popped(ids[i])
      else
        forget_job(ids[i], 'waiting', 'drained', now)
        removed = removed + 1
      end
    end
  end
end
if removed < limit then drop_pairs(redis.call('ZPOPMIN', K.prio, limit - removed), 'waiting') end
if removed < limit then
  drop_pairs(redis.call('ZPOPMIN', K.delayed, limit - removed), 'delayed')
end
local left = redis.call('LLEN', K.wait) + redis.call('ZCARD', K.prio)
  + redis.call('ZCARD', K.delayed) + grp_ready_correction()
return {removed, left}
