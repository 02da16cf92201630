#!lua
--[[ obliterate (first, atomic step): check that no job is active and pause the queue so that
none starts while the caller deletes its keys (SCAN in batches, `meta` last).
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 events maxlen, 2 '1' to go ahead even with active jobs (their workers lose them)
Returns: 1 when the queue is paused for deletion (event `obliterating`), -4 when jobs are
active and ARGV 2 is not '1' (nothing changed).
]]
--@include common.lua
--@include queue_keys.lua

if ARGV[2] ~= '1' and redis.call('ZCARD', K.active) > 0 then return -4 end
redis.call('HSET', K.meta, 'paused', '1', 'obliterating', '1')
emit(K.events, ARGV[1], 'ev', 'obliterating', 'ts', now_ms())
return 1
