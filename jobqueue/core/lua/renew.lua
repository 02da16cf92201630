#!lua
--[[ renew: extend the leases of a worker's running jobs (one call for all of them).
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 lease ms, 3 count m, then m pairs: id, token
Returns: {lost_ids, cancel_ids}: jobs whose lease this worker no longer holds (their handlers
must stop), and held jobs that someone asked to cancel (id, reason, id, reason...).
]]
--@include common.lua
--@include queue_keys.lua

local base = ARGV[1]
local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancels = {}, {}
for i = 0, tonumber(ARGV[3]) - 1 do
  local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
  if redis.call('HGET', base .. 's:' .. id, 'k') == token
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
