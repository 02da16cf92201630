#!lua
--[[ add: store new jobs and make them ready (or delayed), deduplicating by job id.
KEYS: id_counter wait prio delayed priorities marker events costs
ARGV:
  base      '<prefix>:{<queue>}:', the start of every key of the queue
  maxlen    cap of the event stream (0 = no events)
  n         how many jobs follow
  per job:
  id        the job id ('' = the next value of the counter)
  name      the job name, for the event
  envelope  the job's JSON object; the server's creation time is appended to it
  delay_ms  0 = ready now
  priority  0 = the FIFO list, else the priority zset
  cost      what it costs of the queue's shared limiter ('' = the queue's default)
EVENTS: added
Returns: flat array {id1, created1, id2, created2, ...}; created is 1, or 0 when a job with
that id already existed (nothing was written for it).
]]
--@include common.lua

local now = now_ms()
local out = {}
local poked = false
for i = 0, tonumber(A.n) - 1 do
  local id, name, env, delay, priority, cost = argv_group(i)
  delay, priority = tonumber(delay), tonumber(priority)
  local seq = redis.call('INCR', K.id_counter)
  if id == '' then id = tostring(seq) end
  local jkey = job_key(A.base, id)
  if redis.call('EXISTS', jkey) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 0
  else
    -- the creation time is the server's, appended to the client's JSON object
    redis.call('SET', jkey, string.sub(env, 1, -2) .. ',"ts":' .. now .. '}')
    if priority ~= 0 then redis.call('HSET', K.priorities, id, priority) end
    if cost ~= '' then redis.call('HSET', K.costs, id, cost) end
    local st = 'waiting'
    if delay > 0 then
      st = 'delayed'
      redis.call('ZADD', K.delayed, delayed_score(now + delay, seq), id)
    elseif priority == 0 then
      redis.call('RPUSH', K.wait, id)
    else
      redis.call('ZADD', K.prio, prio_score(priority, seq), id)
    end
    emit(K.events, A.maxlen, 'ev', 'added', 'id', id, 'name', name, 'st', st, 'ts', now)
    poked = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if poked then poke(K.marker) end
return out
