#!lua
--[[ scheduler_upsert: create or change a scheduler; an unchanged spec keeps its next run.
KEYS: schedulers scheduler(id) id_counter
ARGV:
  id        the scheduler id
  schedule  the canonical schedule ('every:<ms>' or 'cron:<expr>@<tz>'); equal to the stored
            one = the same schedule: its next run time is kept (a redeploy that upserts again
            neither skips nor repeats a tick)
  every_ms  the interval in ms ('' for a cron schedule)
  cron      the cron expression ('' for an interval)
  tz        the cron's time zone
  name      the job name, for listings
  envelope  the JSON envelope of the job each tick adds (without its creation time)
  priority  the job's priority (0 = the FIFO list)
  cost      its cost of the queue's shared limiter ('' = the queue's default)
  next_ms   the first run of a new or changed cron schedule, computed by the caller from Redis
            time; '' for an interval: now + every_ms, on this server's clock
EVENTS: none
Returns: {next_ms, kept}: the scheduler's next run time; kept is 1 when it was unchanged.
]]
--@include common.lua

local now = now_ms()
local old = redis.call('HMGET', K.scheduler, 'spec', 'next')
local next_ms = old[2]
local kept = 1
if old[1] ~= A.schedule or not next_ms then
  kept = 0
  if A.next_ms == '' then
    next_ms = string.format('%d', now + tonumber(A.every_ms))
  else
    next_ms = A.next_ms
  end
end
redis.call('HSET', K.scheduler, 'spec', A.schedule, 'every', A.every_ms, 'cron', A.cron, 'tz', A.tz,
  'name', A.name, 'env', A.envelope, 'priority', A.priority,
  'cost', A.cost, 'next', next_ms)
redis.call('HSETNX', K.scheduler, 'created', now)
redis.call('ZADD', K.schedulers, next_ms, A.id)
-- the queue is found by discovery (inspect) before its first job: the id counter marks it
redis.call('SET', K.id_counter, 0, 'NX')
return {next_ms, kept}
