#!lua
--[[ log: append one line to a job's log, keeping only the newest lines.
KEYS: logs(id) jobs legacy_job(id)
ARGV:
  id         the job
  line       the line
  max_lines  lines kept
EVENTS: none
Returns: the log's length, or -1 when the job does not exist (nothing written).
]]

-- the envelope: a field of `jobs`, or the string key of a job written before that hash
if redis.call('HEXISTS', K.jobs, A.id) == 0 and redis.call('EXISTS', K.legacy_job) == 0 then
  return -1
end
local n = redis.call('RPUSH', K.logs, A.line)
local most = tonumber(A.max_lines)
if n > most then
  redis.call('LTRIM', K.logs, -most, -1)
  n = most
end
return n
