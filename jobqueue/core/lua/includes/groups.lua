-- Groups (fair share): a job added with a group waits in its group's zset `gz:<group>`
-- (score prio_score: priority, then FIFO), not in `wait`/`prio`. The group takes part in the
-- ready structures through ONE member, its token `!<group>` (`!` cannot start a job id),
-- placed at the back of the level of the group's head job: in `wait` for priority 0, else in
-- `prio`. Taking the token takes the group's head job and puts the token back at the back of
-- its level, so groups (and ungrouped jobs) of one priority level are served in turn, and a
-- take stays O(log n). A group at its concurrency cap has its token parked (out of the ready
-- structures) until one of its jobs leaves `active`.
--
-- The hash K.groups holds: `n` grouped jobs waiting, `t` tokens in wait/prio, and per group
-- `q:<g>` where its token is (its priority level, or 'p' parked; no field = no job waiting),
-- `a:<g>` its active jobs, `c:<g>` its cap (kept while the group has jobs waiting or active).
-- A grouped job's entry in K.priorities is '<priority>:<cap>:<group>' (a plain number for an
-- ungrouped one), so whatever requeues a job (retry, stall, hand-back, delayed promotion)
-- finds its group there; its state hash holds `g` from its take on, for the scripts that see
-- it leave `active`.
-- Uses K.groups, K.wait, K.prio, K.id_counter and A.base. Needs keys.lua and prio_score.

local GROUP_TOKEN = 33 -- string.byte('!')

local function grp_key(g)
  return group_key(A.base, g)
end

-- (priority, cap, group) of a K.priorities value; group nil for an ungrouped job.
local function grp_parse(v)
  if not v then return 0, 0, nil end
  local n = tonumber(v)
  if n then return n, 0, nil end
  local p, c, g = string.match(v, '^(%-?%d+):(%d+):(.*)$')
  return tonumber(p), tonumber(c), g
end

local function grp_is_token(member)
  return string.byte(member, 1) == GROUP_TOKEN
end

-- Priority of the group's head job, nil when the group has none waiting.
local function grp_head_priority(g)
  local first = redis.call('ZRANGE', grp_key(g), 0, 0, 'WITHSCORES')
  if not first[2] then return nil end
  return -math.floor(tonumber(first[2]) / 4294967296)
end

local function grp_at_cap(g)
  local v = redis.call('HMGET', K.groups, 'c:' .. g, 'a:' .. g)
  local cap = tonumber(v[1])
  return cap ~= nil and tonumber(v[2] or '0') >= cap
end

-- Put the token where the group's head is (at the back of that level), park it when the
-- group is at its cap, or leave it out when nothing waits. The token must be out before.
local function grp_place(g)
  local p = grp_head_priority(g)
  if p == nil then return end
  if grp_at_cap(g) then
    redis.call('HSET', K.groups, 'q:' .. g, 'p')
    return
  end
  if p == 0 then
    redis.call('RPUSH', K.wait, '!' .. g)
  else
    redis.call('ZADD', K.prio, prio_score(p, redis.call('INCR', K.id_counter)), '!' .. g)
  end
  redis.call('HSET', K.groups, 'q:' .. g, p)
  redis.call('HINCRBY', K.groups, 't', 1)
end

-- Take the token out of wait/prio (or unpark it).
local function grp_token_out(g)
  local q = redis.call('HGET', K.groups, 'q:' .. g)
  if not q then return end
  redis.call('HDEL', K.groups, 'q:' .. g)
  if q == 'p' then return end
  if tonumber(q) == 0 then
    redis.call('LREM', K.wait, 1, '!' .. g)
  else
    redis.call('ZREM', K.prio, '!' .. g)
  end
  redis.call('HINCRBY', K.groups, 't', -1)
end

-- Drop the group's cap once nothing of it waits or runs (its next job brings it back).
local function grp_forget_if_idle(g)
  if redis.call('HEXISTS', K.groups, 'q:' .. g) == 0
    and redis.call('HEXISTS', K.groups, 'a:' .. g) == 0 then
    redis.call('HDEL', K.groups, 'c:' .. g)
  end
end

-- A parked token goes back when the group is below its cap again.
local function grp_unpark(g)
  if redis.call('HGET', K.groups, 'q:' .. g) == 'p' and not grp_at_cap(g) then
    redis.call('HDEL', K.groups, 'q:' .. g)
    grp_place(g)
  end
end

-- Make a grouped job ready: into its group, the token following a new head of a higher level.
-- `seq` orders it within its priority (0 = the front: a job coming back).
local function grp_push(id, priority, cap, g, seq)
  if cap > 0 and tonumber(redis.call('HGET', K.groups, 'c:' .. g)) ~= cap then
    redis.call('HSET', K.groups, 'c:' .. g, cap)
    grp_unpark(g)
  end
  if redis.call('ZADD', grp_key(g), prio_score(priority, seq), id) == 0 then
    return -- already waiting in its group
  end
  redis.call('HINCRBY', K.groups, 'n', 1)
  local q = redis.call('HGET', K.groups, 'q:' .. g)
  if not q then
    grp_place(g)
  elseif q ~= 'p' and tonumber(q) < priority then
    grp_token_out(g)
    grp_place(g)
  end
end

-- Take a waiting job out of its group (remove, cancel, clean, a dedup replace): the token
-- follows the group's new head, or leaves with the last job. False when it was not there.
local function grp_detach(id, g)
  if redis.call('ZREM', grp_key(g), id) == 0 then return false end
  redis.call('HINCRBY', K.groups, 'n', -1)
  local q = redis.call('HGET', K.groups, 'q:' .. g)
  local p = grp_head_priority(g)
  if p == nil then
    grp_token_out(g)
    grp_forget_if_idle(g)
  elseif q and q ~= 'p' and tonumber(q) ~= p then
    grp_token_out(g)
    grp_place(g)
  end
  return true
end

-- A token was just removed from wait/prio by a take: the group's head job starts (its id is
-- returned; nil when the group is at its cap: the token is parked), the token goes back.
local function grp_take(g)
  redis.call('HDEL', K.groups, 'q:' .. g)
  redis.call('HINCRBY', K.groups, 't', -1)
  if grp_at_cap(g) then
    -- the cap was lowered since the token was placed
    if redis.call('EXISTS', grp_key(g)) == 1 then redis.call('HSET', K.groups, 'q:' .. g, 'p') end
    return nil
  end
  local popped = redis.call('ZPOPMIN', grp_key(g))
  if not popped[1] then return nil end
  redis.call('HINCRBY', K.groups, 'n', -1)
  redis.call('HINCRBY', K.groups, 'a:' .. g, 1)
  grp_place(g)
  return popped[1]
end

-- A job of group g left `active` (finished, deferred, handed back, stalled): one slot of the
-- group's cap is free again.
local function grp_left(g)
  if redis.call('HINCRBY', K.groups, 'a:' .. g, -1) <= 0 then
    redis.call('HDEL', K.groups, 'a:' .. g)
  end
  grp_unpark(g)
  grp_forget_if_idle(g)
end

-- Run `fn(...)` with the group functions pointed at `keys` (`queue_keys` of another queue of
-- the script's slot, such as a flow parent's): they read K and A.base, so both are switched
-- for the call and restored after it. A script whose KEYS hold no groups key (a flow's,
-- storing a grouped job of its own queue) switches too.
local function grp_on(keys, fn, ...)
  if keys.base == nil or (keys.base == A.base and K.groups) then return fn(...) end
  local k, base = K, A.base
  K, A.base = keys, keys.base
  local ok, r = pcall(fn, ...)
  K, A.base = k, base
  if not ok then error(r, 0) end
  return r
end

-- The grouped job whose K.priorities value is v goes back to its group (front or back).
local function grp_push_job(id, v, front)
  local priority, cap, g = grp_parse(v)
  local seq = 0
  if not front then seq = redis.call('INCR', K.id_counter) end
  grp_push(id, priority, cap, g, seq)
end

-- Up to `limit` groups with jobs waiting (their token in wait/prio or parked), for the
-- operations that go through every waiting job (drain, clean, listing): HSCAN of `q:` fields.
local function grp_waiting_groups(limit)
  local found, cursor = {}, '0'
  repeat
    local page = redis.call('HSCAN', K.groups, cursor, 'MATCH', 'q:*', 'COUNT', 100)
    cursor = page[1]
    for i = 1, #page[2], 2 do
      if #found < limit then found[#found + 1] = string.sub(page[2][i], 3) end
    end
  until cursor == '0' or #found >= limit
  return found
end

-- A token popped by something other than a take (drain): it goes back where it belongs.
local function grp_token_popped(member)
  local g = string.sub(member, 2)
  redis.call('HDEL', K.groups, 'q:' .. g)
  redis.call('HINCRBY', K.groups, 't', -1)
  grp_place(g)
end

-- Waiting jobs counted by wait + prio, corrected for the groups: tokens out, grouped jobs in.
local function grp_ready_correction()
  local v = redis.call('HMGET', K.groups, 'n', 't')
  return tonumber(v[1] or '0') - tonumber(v[2] or '0')
end
