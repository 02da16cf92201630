#!lua
--[[ cancel: stop a job wherever it is. A waiting or delayed job is removed; an active one is
flagged in the cancels hash (renew.lua reports it to its worker) and announced on the cancel
channel so that its worker stops the handler at once.
KEYS: wait prio priorities delayed active completed failed cancels events costs groups
  id_counter jobs
ARGV:
  base     '<prefix>:{<queue>}:'
  maxlen   cap of the event stream
  id       the job
  reason   recorded as the job's error message
  channel  the queue's cancel channel (pub/sub)
EVENTS: removed cancelling failed waiting
Returns: 1 removed (event `removed`), 2 signalled (event `cancelling`; the worker ends the job
as failed/CANCELLED), 3 already finished (nothing changed), 0 when no such job.
]]
--@include common.lua
--@include jobs.lua

local prev = job_state(A.id)
if not prev then return 0 end
if prev == 'completed' or prev == 'failed' then return 3 end
local now = now_ms()
if prev == 'active' then
  redis.call('HSET', K.cancels, A.id, A.reason)
  redis.call('PUBLISH', A.channel, cjson.encode({id = A.id, reason = A.reason}))
  emit(K.events, A.maxlen, 'ev', 'cancelling', 'id', A.id, 'reason', A.reason, 'ts', now)
  return 2
end
detach_job(A.id, prev)
forget_job(A.id, prev, A.reason, now)
return 1
