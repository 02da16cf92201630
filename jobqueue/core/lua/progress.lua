#!lua
--[[ progress: record a running job's progress (0..100), fenced by its lease token.
KEYS: active events
ARGV:
  base      '<prefix>:{<queue>}:'
  maxlen    cap of the event stream
  id        the job
  token     the lease token of the running attempt
  progress  0..100
EVENTS: progress
Returns: 0, or -2 when the lease is lost (nothing written).
]]
--@include common.lua

local skey = state_key(A.base, A.id)
if redis.call('HGET', skey, 'k') ~= A.token or not redis.call('ZSCORE', K.active, A.id) then
  return -2
end
redis.call('HSET', skey, 'p', A.progress)
emit(K.events, A.maxlen, 'ev', 'progress', 'id', A.id, 'p', A.progress, 'ts', now_ms())
return 0
