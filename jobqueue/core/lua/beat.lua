#!lua flags=allow-oom
--[[ beat: a worker's heartbeat: write its hash (expiring), its name in the worker set scored by
the beat's time, and prune the names of workers gone long ago. Runs when Redis is out of memory
(allow-oom): after the first beat it only overwrites a small hash of fixed fields, and it is what
tells an operator that the worker is degraded (e.g. "take/finish: QueueFullError ...").
KEYS: worker(id) worker_set
ARGV:
  name      the worker's name
  ttl_ms    the hash expires after this (3 heartbeat intervals)
  keep_ms   names whose last beat is older than this leave the worker set
  n         how many fields follow
  per field:
  field     the field's name ('beat' is set here, from Redis TIME)
  value     its value
EVENTS: none
Returns: the number of fields the hash did not have (all of them: the key was gone).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(A.n)
local args = {'beat', now}
for i = 0, n - 1 do
  local field, value = argv_group(i)
  args[#args + 1] = field
  args[#args + 1] = value
end
local created = redis.call('HSET', K.worker, unpack(args))
redis.call('PEXPIRE', K.worker, A.ttl_ms)
redis.call('ZADD', K.worker_set, now, A.name)
redis.call('ZREMRANGEBYSCORE', K.worker_set, '-inf', now - tonumber(A.keep_ms))
return created
