#!lua flags=no-writes
--[[ getjob: read one job atomically.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 id
Returns: {} when no such job, else {envelope, state, state_hash_flat}. The state is derived
for jobs that never ran: 'delayed' when in the delayed set, else 'waiting' (or 'paused'
when the queue is paused).
]]
--@include queue_keys.lua

local base, id = ARGV[1], ARGV[2]
local env = redis.call('GET', base .. 'j:' .. id)
if not env then return {} end
local h = redis.call('HGETALL', base .. 's:' .. id)
local state = redis.call('HGET', base .. 's:' .. id, 's')
if not state then
  if redis.call('ZSCORE', K.delayed, id) then
    state = 'delayed'
  elseif redis.call('HEXISTS', K.meta, 'paused') == 1 then
    state = 'paused'
  else
    state = 'waiting'
  end
end
return {env, state, h}
