#!lua
--[[ remove: delete one job that is not running, with its run state and its log.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 id
Returns: 1 removed (event `removed`), 0 when no such job, -5 when the job is active (nothing
changed: cancel it instead).
]]
--@include common.lua
--@include queue_keys.lua
--@include jobs.lua

local base, maxlen, id = ARGV[1], ARGV[2], ARGV[3]
local prev = job_state(K, base, id)
if not prev then return 0 end
if prev == 'active' then return -5 end
detach_job(K, id, prev)
forget_job(K, base, maxlen, id, prev, '', now_ms())
return 1
