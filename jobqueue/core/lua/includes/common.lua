-- Shared helpers of the scripts. Time always comes from the Redis server (TIME) so that clock
-- skew between workers cannot break delays, leases or rate limits.
--@include keys.lua

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to the queue's stream, capped by approximate length (0 = events off).
local function emit(events_key, maxlen, ...)
  if tonumber(maxlen) > 0 then
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', ...)
  end
end

-- Wake one worker blocked in BZPOPMIN on the marker (a single member keeps it bounded).
local function poke(marker_key)
  redis.call('ZADD', marker_key, 0, '0')
end

-- Score of a delayed job: due time in ms, then a sequence so equal due times stay FIFO.
-- 2^43 ms (year 2248) * 1024 stays exact in a double.
local function delayed_score(due, seq)
  return due * 1024 + (seq % 1024)
end

-- Score in the priority zset: higher priority first, FIFO within a priority.
local function prio_score(priority, seq)
  return -priority * 4294967296 + (seq % 4294967296)
end

--@include groups.lua
--@include dedup.lua

-- Make a job ready to run: the plain FIFO list for priority 0, the zset otherwise, its
-- group's zset for a grouped job (groups.lua; the script then needs K.groups).
-- `keys` holds wait, prio, priorities and id_counter.
local function push_ready(keys, id, front)
  local v = redis.call('HGET', keys.priorities, id)
  local priority = tonumber(v or '0')
  if priority == nil then
    grp_on(keys, grp_push_job, id, v, front)  -- `keys` may be another queue's (a flow parent)
  elseif priority == 0 then
    if front then
      redis.call('LPUSH', keys.wait, id)
    else
      redis.call('RPUSH', keys.wait, id)
    end
  else
    local seq = redis.call('INCR', keys.id_counter)
    if front then seq = 0 end
    redis.call('ZADD', keys.prio, prio_score(priority, seq), id)
  end
end

-- Delete every key of a job (and its priority, when `priorities` is given, with the
-- deduplication key it still holds: its `#<id>` entry there, see dedup.lua).
local function delete_job(base, priorities, id)
  redis.call('HDEL', jobs_key(base), id)
  -- with the envelope's string key of a job written before the `jobs` hash (keys.lua)
  redis.call('DEL', legacy_job_key(base, id), state_key(base, id), log_key(base, id),
    deps_key(base, id), results_key(base, id), failures_key(base, id))
  if priorities then
    dd_release(base, priorities, id)
    redis.call('HDEL', priorities, id, '#' .. id)
  end
end

-- Keep at most `count` entries and none older than `age_ms` in a finished-jobs zset.
-- Bounded work per call; the rest is trimmed by later calls.
local function trim_finished(base, priorities, set_key, count, age_ms, now)
  count = tonumber(count)
  age_ms = tonumber(age_ms)
  local removed = 0
  -- most queues never use priorities: skip a per-job HDEL then
  if redis.call('HLEN', priorities) == 0 then priorities = nil end
  if count >= 0 then
    local excess = redis.call('ZCARD', set_key) - count
    if excess > 0 then
      if excess > 100 then excess = 100 end
      local old = redis.call('ZPOPMIN', set_key, excess)
      for i = 1, #old, 2 do
        delete_job(base, priorities, old[i])
        removed = removed + 1
      end
    end
  end
  if age_ms >= 0 then
    local old = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - age_ms, 'LIMIT', 0, 100)
    for i = 1, #old do
      redis.call('ZREM', set_key, old[i])
      delete_job(base, priorities, old[i])
      removed = removed + 1
    end
  end
  return removed
end
