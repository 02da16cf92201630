#!lua
--[[ log: append one line to a job's log, keeping only the newest lines.
KEYS: logs(id) job(id)
ARGV:
  line       the line
  max_lines  lines kept
EVENTS: none
Returns: the log's length, or -1 when the job does not exist (nothing written).
]]

if redis.call('EXISTS', K.job) == 0 then return -1 end
local n = redis.call('RPUSH', K.logs, A.line)
local most = tonumber(A.max_lines)
if n > most then
  redis.call('LTRIM', K.logs, -most, -1)
  n = most
end
return n
