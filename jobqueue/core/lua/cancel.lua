#!lua
--[[ cancel: stop a job wherever it is. A waiting or delayed job is removed; an active one is
flagged in the cancels hash (renew.lua reports it to its worker) and announced on the cancel
channel so that its worker stops the handler at once.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 id, 4 reason, 5 cancel channel
Returns: 1 removed (event `removed`), 2 signalled (event `cancelling`; the worker ends the job
as failed/CANCELLED), 3 already finished (nothing changed), 0 when no such job.
]]
--@include common.lua
--@include queue_keys.lua
--@include jobs.lua

local base, maxlen, id, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local prev = job_state(K, base, id)
if not prev then return 0 end
if prev == 'completed' or prev == 'failed' then return 3 end
local now = now_ms()
if prev == 'active' then
  redis.call('HSET', K.cancels, id, reason)
  redis.call('PUBLISH', ARGV[5], cjson.encode({id = id, reason = reason}))
  emit(K.events, maxlen, 'ev', 'cancelling', 'id', id, 'reason', reason, 'ts', now)
  return 2
end
detach_job(K, id, prev)
forget_job(K, base, maxlen, id, prev, reason, now)
return 1
