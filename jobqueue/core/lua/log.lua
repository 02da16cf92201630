#!lua
--[[ log: append one line to a job's log, keeping only the newest lines.
KEYS: 1 the job's log list, 2 the job's envelope key
ARGV: 1 line, 2 max lines kept
Returns: the log's length, or -1 when the job does not exist (nothing written).
]]

if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
local most = tonumber(ARGV[2])
if n > most then
  redis.call('LTRIM', KEYS[1], -most, -1)
  n = most
end
return n
