#!lua flags=allow-oom
--[[ obliterate: the first, atomic step: check that no job is active and pause the queue so that
none starts while the caller deletes its keys (SCAN in batches, `meta` last).
KEYS: active meta events
ARGV:
  maxlen  cap of the event stream
  force   '1' to go ahead even with active jobs (their workers lose them)
EVENTS: obliterating
Returns: 1 when the queue is paused for deletion (event `obliterating`), -4 when jobs are
active and force is not '1' (nothing changed).
]]
--@include common.lua

if A.force ~= '1' and redis.call('ZCARD', K.active) > 0 then return -4 end
redis.call('HSET', K.meta, 'paused', '1', 'obliterating', '1')
emit(K.events, A.maxlen, 'ev', 'obliterating', 'ts', now_ms())
return 1
