#!lua
--[[ pause: stop or restart job starts for every worker of the queue. In-flight jobs finish
normally.
KEYS: meta marker events
ARGV:
  maxlen  cap of the event stream
  pause   '1' to pause, '0' to resume
EVENTS: paused resumed
Returns: 1 when the state changed, 0 when it already was so.
]]
--@include common.lua

local changed
if A.pause == '1' then
  changed = redis.call('HSETNX', K.meta, 'paused', '1')
else
  changed = redis.call('HDEL', K.meta, 'paused')
  poke(K.marker)
end
if changed == 1 then
  if A.pause == '1' then
    emit(K.events, A.maxlen, 'ev', 'paused', 'ts', now_ms())
  else
    emit(K.events, A.maxlen, 'ev', 'resumed', 'ts', now_ms())
  end
end
return changed
