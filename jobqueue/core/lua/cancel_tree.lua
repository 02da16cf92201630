#!lua
--[[ cancel_tree: cancel a job and every job under it that has not ended, on any queue of its
hash slot, in one atomic step. A waiting, delayed or waiting-children job is removed; an active
one is flagged in its queue's cancels hash and announced on its cancel channel (its worker, in
any process, stops the handler: the job ends failed/CANCELLED). A parent's dependencies are
dropped before its children are cancelled, so no child's end can release it; a parent is
removed, so it never runs afterwards. Pending children are cancelled whatever their parent's
state: children added while it ran (add_children.lua) are under a running, waiting or
delayed parent too. The root's own flow parent hears of the root's end.
KEYS: events cancels jobs
ARGV:
  base     '<prefix>:{<queue>}:' of the root's queue
  maxlen   cap of the event streams
  id       the root job
  reason   recorded as the error message of the jobs signalled
EVENTS: removed cancelling failed waiting
Returns: {root, removed, signalled}: root is 1 removed, 2 signalled, 3 already finished, 0 no
such job (as `cancel`); then the references '<queue>:<id>' of the jobs under the root that
were removed, and of those signalled (two arrays, in the order the tree was walked).
]]
--@include common.lua
--@include flows.lua

local now = now_ms()
local removed, signalled = {}, {}

local function child_id(ref)
  return string.sub(ref, string.find(ref, ':', 1, true) + 1)
end

local cancel_node

-- Cancel a job's pending children; its dependencies go first, so no child's end releases it.
local function cancel_children(base, id)
  local dkey = deps_key(base, id)
  local deps = redis.call('HGETALL', dkey)
  if #deps == 0 then return end
  redis.call('DEL', dkey)
  for i = 1, #deps, 2 do
    local code = cancel_node(deps[i + 1], child_id(deps[i]))
    if code == 1 then
      removed[#removed + 1] = deps[i]
    elseif code == 2 then
      signalled[#signalled + 1] = deps[i]
    end
  end
end

-- Cancel one job of the tree; returns what happened to it (the codes of the reply's root).
cancel_node = function(base, id)
  local q = queue_keys(base)
  if not env_exists(base, id) then return 0 end
  if redis.call('ZSCORE', q.active, id) then
    -- flagged first: its wait outcome, if it comes before the handler stops, fails it too
    redis.call('HSET', q.cancels, id, A.reason)
    redis.call('PUBLISH', q.cancel_channel, cjson.encode({id = id, reason = A.reason}))
    emit(q.events, A.maxlen, 'ev', 'cancelling', 'id', id, 'reason', A.reason, 'ts', now)
    cancel_children(base, id)
    return 2
  end
  local skey = state_key(base, id)
  local s = redis.call('HGET', skey, 's')
  if s == 'completed' or s == 'failed' then return 3 end
  local prev = 'waiting'
  cancel_children(base, id)
  if s == 'waiting-children' then
    prev = s
    redis.call('ZREM', q.waiting_children, id)
  elseif redis.call('ZREM', q.delayed, id) == 1 then
    prev = 'delayed'
  else
    local _, _, g = grp_parse(redis.call('HGET', q.priorities, id))
    if g then
      grp_on(q, grp_detach, id, g)  -- a grouped job waits in its group (groups.lua)
    elseif redis.call('ZREM', q.prio, id) == 0 then
      redis.call('LREM', q.wait, 1, id)
    end
  end
  -- its own parent (the root's, outside the tree; inside it the link is already gone)
  flow_child_ended(base, id, false, '', 'CANCELLED', A.reason, now)
  redis.call('HDEL', q.cancels, id)
  redis.call('HDEL', q.costs, id)
  delete_job(base, q.priorities, id)
  emit(q.events, A.maxlen, 'ev', 'removed', 'id', id, 'prev', prev, 'reason', A.reason,
    'ts', now)
  return 1
end

local root = cancel_node(A.base, A.id)
return {root, removed, signalled}
