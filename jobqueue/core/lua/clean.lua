#!lua flags=allow-oom
--[[ clean: remove jobs of one state older than a grace period. Finished jobs are aged by their
finish time, waiting and delayed ones by their creation time.
KEYS: wait prio priorities delayed completed failed cancels events costs groups id_counter
  jobs
ARGV:
  base      '<prefix>:{<queue>}:'
  maxlen    cap of the event stream
  state     'completed', 'failed', 'waiting' or 'delayed'
  grace_ms  minimum age of the jobs removed
  limit     most jobs removed
  scan_cap  most waiting/delayed ids examined
EVENTS: removed failed waiting
Returns: the removed ids (one `removed` event each).
]]
--@include common.lua
--@include jobs.lua

local state = A.state
local limit, cap = tonumber(A.limit), tonumber(A.scan_cap)
local now = now_ms()
local cutoff = now - tonumber(A.grace_ms)
local out = {}

local function drop(id)
  forget_job(id, state, 'cleaned', now)
  out[#out + 1] = id
end

local function clean_zset(key)
  local ids = redis.call('ZRANGE', key, 0, cap - 1)
  for i = 1, #ids do
    if #out >= limit then return end
    if not grp_is_token(ids[i]) and created_ms(ids[i]) <= cutoff then
      redis.call('ZREM', key, ids[i])
      drop(ids[i])
    end
  end
end

-- the waiting jobs of groups, up to `cap` examined in all
local function clean_groups()
  local groups, seen = grp_waiting_groups(cap), 0
  for g = 1, #groups do
    local ids = redis.call('ZRANGE', group_key(A.base, groups[g]), 0, cap - seen - 1)
    for i = 1, #ids do
      if #out >= limit then return end
      if created_ms(ids[i]) <= cutoff then
        grp_detach(ids[i], groups[g])
        drop(ids[i])
      end
    end
    seen = seen + #ids
    if seen >= cap then return end
  end
end

if state == 'completed' or state == 'failed' then
  local key = K.completed
  if state == 'failed' then key = K.failed end
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, limit)
  for i = 1, #ids do
    redis.call('ZREM', key, ids[i])
    drop(ids[i])
  end
elseif state == 'delayed' then
  clean_zset(K.delayed)
elseif state == 'waiting' then
  clean_zset(K.prio)
  -- list entries are marked by index, then removed in one LREM (no LREM per id)
  local ids = redis.call('LRANGE', K.wait, 0, cap - 1)
  local marked = 0
  for i = 1, #ids do
    if #out >= limit then break end
    if not grp_is_token(ids[i]) and created_ms(ids[i]) <= cutoff then
      redis.call('LSET', K.wait, i - 1, '!!removed')
      marked = marked + 1
      drop(ids[i])
    end
  end
  if marked > 0 then redis.call('LREM', K.wait, marked, '!!removed') end
  clean_groups()
end
return out
