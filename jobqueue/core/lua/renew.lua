#!lua flags=allow-oom
--[[ renew: extend the leases of a worker's running jobs (one call for all of them).
KEYS: active cancels
ARGV:
  base      '<prefix>:{<queue>}:'
  lease_ms  the new lease, from now
  m         how many jobs follow
  per job:
  id        a job the worker runs
  token     its lease token
EVENTS: none
Returns: {lost_ids, cancels}: jobs whose lease this worker no longer holds (their handlers
must stop), and held jobs that someone asked to cancel (id, reason, id, reason...).
]]
--@include common.lua

local deadline = now_ms() + tonumber(A.lease_ms)
local lost, cancels = {}, {}
for i = 0, tonumber(A.m) - 1 do
  local id, token = argv_group(i)
  if redis.call('HGET', state_key(A.base, id), 'k') == token
      and redis.call('ZSCORE', K.active, id) then
    redis.call('ZADD', K.active, 'XX', deadline, id)
    local reason = redis.call('HGET', K.cancels, id)
    if reason then
      cancels[#cancels + 1] = id
      cancels[#cancels + 1] = reason
    end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancels}
