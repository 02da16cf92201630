-- Shared helpers of the scripts. Time always comes from the Redis server (TIME) so that clock
-- skew between workers cannot break delays, leases or rate limits.
--@include keys.lua

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Counts (attempts, starts) cross between Redis's text and Lua's numbers several times a job,
-- and each crossing is a printf (`tostring`, or a number given to `redis.call`) or a strtod
-- (`tonumber`). These memos make each small count's crossing once: once a library load when
-- the scripts run as the function library, once a call by EVALSHA. Bounded: counts below 256,
-- texts of at most 3 characters.
local count_texts, count_numbers = {}, {}

-- The decimal text of the count `n` (a whole number).
local function count_text(n)
  local s = count_texts[n]
  if s == nil then
    s = tostring(n)
    if n >= 0 and n < 256 then count_texts[n] = s end
  end
  return s
end

-- The number in the text `s` (a decimal count), or nil when `s` is not a number.
local function count_number(s)
  local n = count_numbers[s]
  if n == nil then
    n = tonumber(s)
    if n and n >= 0 and n < 256 and #s <= 3 then count_numbers[s] = n end
  end
  return n
end

-- Append one event to the queue's stream, capped by approximate length (0 = events off).
-- (`maxlen` is A.maxlen, the decimal text Python passes: compared as text, not parsed each time)
local function emit(events_key, maxlen, ...)
  if maxlen ~= '0' then
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', ...)
  end
end

-- Wake one worker blocked in BZPOPMIN on the marker (a single member keeps it bounded).
local function poke(marker_key)
  redis.call('ZADD', marker_key, 0, '0')
end

-- `command key a1 a2 ...` with the flat list `args` (ids for RPUSH; score, member pairs for
-- ZADD): one command per batch of jobs instead of one per job, in commands of at most 1000
-- arguments (`unpack` has a stack limit; an even count keeps pairs whole). Nothing when empty.
local function call_batched(command, key, args)
  for i = 1, #args, 1000 do
    redis.call(command, key, unpack(args, i, math.min(i + 999, #args)))
  end
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

-- Append to `keys` the keys of a job but its envelope (a field of `jobs`); with them the string
-- key of the envelope of a job written before that hash (keys.lua).
local function add_job_keys(keys, base, id)
  local n = #keys
  keys[n + 1] = legacy_job_key(base, id)
  keys[n + 2] = state_key(base, id)
  keys[n + 3] = log_key(base, id)
  keys[n + 4] = deps_key(base, id)
  keys[n + 5] = results_key(base, id)
  keys[n + 6] = failures_key(base, id)
end

-- Drop a deleted job's priority, with the deduplication key it still holds (its `#<id>` entry
-- there, see dedup.lua).
local function release_job(base, priorities, id)
  dd_release(base, priorities, id)
  redis.call('HDEL', priorities, id, '#' .. id)
end

-- Delete every key of a job and its envelope (and its priority, when `priorities` is given).
local function delete_job(base, priorities, id)
  redis.call('HDEL', jobs_key(base), id)
  local keys = {}
  add_job_keys(keys, base, id)
  redis.call('DEL', unpack(keys))
  if priorities then release_job(base, priorities, id) end
end

-- Keep at most `count` entries and none older than `age_ms` in a finished-jobs zset.
-- Bounded work per call (at most 200 jobs); the rest is trimmed by later calls. The jobs it
-- deletes go in one HDEL (their envelopes) and one DEL (their other keys).
local function trim_finished(base, priorities, set_key, count, age_ms, now)
  count = tonumber(count)
  age_ms = tonumber(age_ms)
  local gone = {}
  if count >= 0 then
    local excess = redis.call('ZCARD', set_key) - count
    if excess > 0 then
      if excess > 100 then excess = 100 end
      -- not ZPOPMIN: it replies with each score, which Redis formats with printf (a few
      -- thousand instructions a job on the worker's hot path) only for this loop to drop it
      gone = redis.call('ZRANGE', set_key, 0, excess - 1)
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
  if age_ms >= 0 then
    local old = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - age_ms, 'LIMIT', 0, 100)
    for i = 1, #old do
      redis.call('ZREM', set_key, old[i])
      gone[#gone + 1] = old[i]
    end
  end
  if #gone == 0 then return 0 end
  redis.call('HDEL', jobs_key(base), unpack(gone))
  local keys = {}
  for i = 1, #gone do add_job_keys(keys, base, gone[i]) end
  redis.call('DEL', unpack(keys))
  -- most queues never use priorities: no per-job HDEL then
  if redis.call('HLEN', priorities) > 0 then
    for i = 1, #gone do release_job(base, priorities, gone[i]) end
  end
  return #gone
end
