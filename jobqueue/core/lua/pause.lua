#!lua
--[[ pause / resume: stop or restart job starts for every worker of the queue. In-flight jobs
finish normally.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 events maxlen, 2 '1' to pause, '0' to resume
Returns: 1 when the state changed, 0 when it already was so.
]]
--@include common.lua
--@include queue_keys.lua

local changed
if ARGV[2] == '1' then
  changed = redis.call('HSETNX', K.meta, 'paused', '1')
else
  changed = redis.call('HDEL', K.meta, 'paused')
  poke(K.marker)
end
if changed == 1 then
  local ev = 'resumed'
  if ARGV[2] == '1' then ev = 'paused' end
  emit(K.events, ARGV[1], 'ev', ev, 'ts', now_ms())
end
return changed
