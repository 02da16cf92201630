#!lua flags=no-writes
--[[ getjob: read one job atomically.
KEYS: delayed meta jobs
ARGV:
  base  '<prefix>:{<queue>}:'
  id    the job
EVENTS: none
Returns: {} when no such job, else {envelope, state, state_hash_flat}. The state is derived
for jobs that never ran: 'delayed' when in the delayed set, else 'waiting' (or 'paused'
when the queue is paused).
]]
--@include keys.lua

local env = env_get(A.base, A.id)
if not env then return {} end
local skey = state_key(A.base, A.id)
local h = redis.call('HGETALL', skey)
local state = redis.call('HGET', skey, 's')
if not state then
  if redis.call('ZSCORE', K.delayed, A.id) then
    state = 'delayed'
  elseif redis.call('HEXISTS', K.meta, 'paused') == 1 then
    state = 'paused'
  else
    state = 'waiting'
  end
end
return {env, state, h}
