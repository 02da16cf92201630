#!lua flags=allow-oom
--[[ remove: delete one job that is not running, with its run state and its log.
KEYS: wait prio priorities delayed active completed failed cancels events costs groups
  id_counter jobs
ARGV:
  base    '<prefix>:{<queue>}:'
  maxlen  cap of the event stream
  id      the job
EVENTS: removed failed waiting
Returns: 1 removed (event `removed`), 0 when no such job, -5 when the job is active (nothing
changed: cancel it instead).
]]
--@include common.lua
--@include jobs.lua

local prev = job_state(A.id)
if not prev then return 0 end
if prev == 'active' then return -5 end
detach_job(A.id, prev)
forget_job(A.id, prev, '', now_ms())
return 1
