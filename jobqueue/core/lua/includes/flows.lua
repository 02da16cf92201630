-- Flows: the fan-in. A flow parent waits in state 'waiting-children' (in its queue's
-- waiting_children zset) while its dependencies hash lists pending children; each child's state
-- hash links it back: 'pb' the parent queue's base, 'pi' the parent id, 'pr' its own reference
-- '<queue>:<id>' (the field in the parent's hashes), 'pf' its on_failure policy.
-- Every script in which a job ends for good calls `flow_child_ended` in the same atomic step:
-- the HDEL of the child from the parent's dependencies is the exactly-once gate (a retried,
-- re-run or re-removed child finds nothing left to remove), and whoever removes the last one
-- moves the parent to ready. Parent and children share one hash slot (checked at add_flow),
-- so the other queue's keys are built from its base (keys.lua `queue_keys`).
-- Needs common.lua (emit, push_ready, poke) and A.maxlen. Emits `failed`, `waiting` on the
-- parent's queue stream.
--@include common.lua

local flow_child_ended

-- The parent leaves 'waiting-children' for the ready list (its last child ended). A parent
-- that is not in waiting_children (it runs, or waits to run again, after adding children
-- dynamically) is left alone: its own wait outcome sees that nothing is pending (flow_wait.lua).
local function flow_release_parent(pbase, pid, now)
  local q = queue_keys(pbase)
  if redis.call('ZREM', q.waiting_children, pid) == 0 then return end
  redis.call('HDEL', state_key(pbase, pid), 's')
  push_ready(q, pid, false)
  poke(q.marker)
  emit(q.events, A.maxlen, 'ev', 'waiting', 'id', pid, 'prev', 'waiting-children', 'ts', now)
end

-- A child with on_failure 'fail' failed: a waiting parent fails at once, without running (its
-- other children are left as they are, like BullMQ's; cancel the tree to stop them), and its
-- own parent hears of it in the same step.
local function flow_fail_parent(pbase, pid, ref, msg, now)
  local q = queue_keys(pbase)
  local em = 'child ' .. ref .. ' failed: ' .. msg
  if redis.call('ZREM', q.waiting_children, pid) == 0 then
    -- a parent that added children while it ran (add_children.lua) is not waiting for them
    -- yet: the first such failure is kept ('cx') and fails it when it waits (flow_wait.lua)
    if env_exists(pbase, pid) then
      redis.call('HSETNX', state_key(pbase, pid), 'cx', em)
    end
    return
  end
  redis.call('DEL', deps_key(pbase, pid))
  redis.call('HSET', state_key(pbase, pid), 's', 'failed', 'em', em, 'et', 'CHILD_FAILED',
    'tf', now)
  redis.call('ZADD', q.failed, now, pid)
  emit(q.events, A.maxlen, 'ev', 'failed', 'id', pid, 'a', 0, 'et', 'CHILD_FAILED', 'em', em,
    'ts', now)
  flow_child_ended(pbase, pid, false, '', 'CHILD_FAILED', em, now)
end

-- The job `id` of the queue at `base` ended: completed (`ok`, its result JSON) or failed,
-- cancelled or removed (`etype`, `msg`). Call it before the job's keys are deleted.
flow_child_ended = function(base, id, ok, result, etype, msg, now)
  local link = redis.call('HMGET', state_key(base, id), 'pb', 'pi', 'pr', 'pf')
  local pbase, pid, ref, policy = link[1], link[2], link[3], link[4]
  if not pbase then return end
  local dkey = deps_key(pbase, pid)
  if redis.call('HDEL', dkey, ref) == 0 then return end
  if ok then
    redis.call('HSET', results_key(pbase, pid), ref, result)
  elseif policy == 'fail' then
    flow_fail_parent(pbase, pid, ref, msg, now)
    return
  elseif policy == 'continue' then
    redis.call('HSET', failures_key(pbase, pid), ref, cjson.encode({et = etype, em = msg}))
  end
  if redis.call('EXISTS', dkey) == 0 then flow_release_parent(pbase, pid, now) end
end
