#!lua
--[[ scheduler_tick: add the job of one due tick and advance the scheduler, atomically.
KEYS: schedulers scheduler(id) wait prio priorities id_counter marker events costs jobs
ARGV:
  base      '<prefix>:{<queue>}:', the start of every key of the queue
  maxlen    cap of the event stream (0 = no events)
  id        the scheduler id
  expected  the next run time (ms) the caller read: the tick to produce. Nothing happens
            unless the scheduler's stored next run is still exactly this (compare-and-set:
            of workers racing for one tick, one advances it, the others find it moved)
  following the next run time after this tick, computed by the caller (> expected)
EVENTS: added
Returns: {code, next_ms}: code 1 = the tick's job was added; 2 = its job existed already
(nothing added, the scheduler advanced); 0 = not this tick any more, or not due yet (no job;
the zset score is set to the stored next run, next_ms); -1 = no such scheduler (its stale
zset entry is dropped); -2 = `following` is not after `expected` (nothing changed).
]]
--@include common.lua

local now = now_ms()
local h = redis.call('HMGET', K.scheduler, 'next', 'env', 'name', 'priority', 'cost')
if not h[1] then
  redis.call('ZREM', K.schedulers, A.id)
  return {-1, 0}
end
local expected = tonumber(A.expected)
if tonumber(h[1]) ~= expected or now < expected then
  -- another worker produced this tick; keep the zset on the hash's next run (it is, unless
  -- someone wrote one without the other: this mends it)
  redis.call('ZADD', K.schedulers, h[1], A.id)
  return {0, h[1]}
end
if tonumber(A.following) <= expected then return {-2, h[1]} end
-- the tick's job id is the scheduler and the tick time: one tick, one job, whoever adds it
local id = 'sched:' .. A.id .. ':' .. A.expected
local code = 2
if not env_exists(A.base, id) then
  code = 1
  local env = h[2]
  env_set(A.base, id, string.sub(env, 1, -2) .. ',"ts":' .. now .. '}')
  local priority = tonumber(h[4] or '0')
  if priority ~= 0 then redis.call('HSET', K.priorities, id, priority) end
  if h[5] and h[5] ~= '' then redis.call('HSET', K.costs, id, h[5]) end
  push_ready(K, id, false)
  emit(K.events, A.maxlen, 'ev', 'added', 'id', id, 'name', h[3], 'st', 'waiting', 'ts', now)
  poke(K.marker)
end
redis.call('HSET', K.scheduler, 'next', A.following, 'last', A.expected)
redis.call('ZADD', K.schedulers, A.following, A.id)
return {code, A.following}
