#!lua
--[[ add: store new jobs and make them ready (or delayed), deduplicating by job id and by
dedup key (includes/dedup.lua); a grouped job waits in its group (includes/groups.lua).
KEYS: id_counter wait prio delayed priorities marker events costs groups jobs
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
  group     '<cap>:<group>' (cap 0 = none), '' = no group
  dedup     '<ttl_ms>:<d|r>:<key>' (d drop, r replace a waiting duplicate), '' = none
EVENTS: added deduplicated
Returns: flat array {id1, code1, id2, code2, ...}; code is 1 (created), 0 (a job with that id
already existed: nothing was written for it), 2 (a duplicate of the job id returned by its
dedup key: dropped) or 3 (a duplicate that replaced the waiting job id returned: its
envelope, priority, group and delay are the new ones, its delay counted from now).
]]
--@include common.lua

local now = now_ms()
local out = {}
local poked = false
local n = tonumber(A.n)

-- The ids that go to the end of the FIFO list, pushed in one RPUSH (`flush`) at the end, or
-- before a job that may touch the list otherwise (a dedup replace takes its holder out of it,
-- a group's token joins it): the list ends as if each had been pushed in turn.
local pushes = {}
local function flush()
  call_batched('RPUSH', K.wait, pushes)
  pushes = {}
end

-- The batch's numbers from the counter (ids, FIFO order in scores): one INCRBY for them all,
-- unless a job is grouped: a group's token takes its own number as it is placed, between
-- the jobs around it, so there each job takes its number in turn.
local next_seq = nil
for i = 0, n - 1 do
  local _, _, _, _, _, _, group = argv_group(i)
  if group ~= '' then next_seq = false; break end
end
if next_seq == nil then next_seq = redis.call('INCRBY', K.id_counter, n) - n + 1 end

-- Write the job's envelope and make it ready or delayed; returns 'waiting' or 'delayed'.
-- `new`: only if no job has the id (env_set_nx, keys.lua: 'given' when the caller gave the
-- id, so a job of that id written before the `jobs` hash is looked for too, 'counter' when
-- the queue's counter made it); nil and nothing written when one has.
local function place(id, env, delay, priority, cost, group, seq, new)
  local body = string.sub(env, 1, -2) .. ',"ts":' .. now .. '}'
  if not new then
    env_set(A.base, id, body)
  elseif not env_set_nx(A.base, id, body, new == 'given') then
    return nil
  end
  local cap, g = nil, nil
  if group ~= '' then
    cap, g = string.match(group, '^(%d+):(.*)$')
    redis.call('HSET', K.priorities, id, priority .. ':' .. cap .. ':' .. g)
  elseif priority ~= 0 then
    redis.call('HSET', K.priorities, id, priority)
  end
  if cost ~= '' then redis.call('HSET', K.costs, id, cost) end
  if delay > 0 then
    redis.call('ZADD', K.delayed, delayed_score(now + delay, seq), id)
    return 'delayed'
  elseif g then
    grp_push(id, priority, tonumber(cap), g, seq)
  elseif priority == 0 then
    pushes[#pushes + 1] = id
  else
    redis.call('ZADD', K.prio, prio_score(priority, seq), id)
  end
  return 'waiting'
end

-- Take a job that has not started out of wait, prio, its group or delayed (a replace).
local function unplace(id)
  if redis.call('ZREM', K.delayed, id) == 1 then return end
  local _, _, g = grp_parse(redis.call('HGET', K.priorities, id))
  if g then
    grp_detach(id, g)
  elseif redis.call('ZREM', K.prio, id) == 0 then
    redis.call('LREM', K.wait, 1, id)
  end
end

for i = 0, n - 1 do
  local id, name, env, delay, priority, cost, group, dedup = argv_group(i)
  delay, priority = tonumber(delay), tonumber(priority)
  local seq
  if next_seq then
    seq, next_seq = next_seq, next_seq + 1
  else
    seq = redis.call('INCR', K.id_counter)
  end
  if dedup ~= '' or group ~= '' then flush() end
  local new = 'given'
  if id == '' then id, new = tostring(seq), 'counter' end
  local holder, pending = nil, false
  if dedup ~= '' then holder, pending = dd_holder(A.base, dedup, now) end
  if holder then
    local _, replace, key = dd_parse(dedup)
    if pending and replace then
      unplace(holder)
      redis.call('HDEL', K.priorities, holder)
      redis.call('HDEL', K.costs, holder)
      -- a run it had before (a retry due) was of its old group; its next take sets the new one
      redis.call('HDEL', state_key(A.base, holder), 'g')
      local st = place(holder, env, delay, priority, cost, group, seq)
      dd_hold(A.base, K.priorities, dedup, holder, now)
      emit(K.events, A.maxlen, 'ev', 'added', 'id', holder, 'name', name, 'st', st,
        'replaced', '1', 'ts', now)
      poked = true
      out[#out + 1] = holder
      out[#out + 1] = 3
    else
      emit(K.events, A.maxlen, 'ev', 'deduplicated', 'id', holder, 'key', key, 'ts', now)
      out[#out + 1] = holder
      out[#out + 1] = 2
    end
  else
    local st = place(id, env, delay, priority, cost, group, seq, new)
    if not st then  -- a job with this id exists: left as it is
      out[#out + 1] = id
      out[#out + 1] = 0
    else
      if dedup ~= '' then dd_hold(A.base, K.priorities, dedup, id, now) end
      emit(K.events, A.maxlen, 'ev', 'added', 'id', id, 'name', name, 'st', st, 'ts', now)
      poked = true
      out[#out + 1] = id
      out[#out + 1] = 1
    end
  end
end
flush()
if poked then poke(K.marker) end
return out
