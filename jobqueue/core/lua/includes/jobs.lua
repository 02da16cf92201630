-- Helpers of the scripts that remove or move single jobs (remove, cancel, drain, clean): they
-- use the keys wait, prio, priorities, delayed, active, completed, failed, cancels, costs,
-- groups and events of K, and A.base / A.maxlen. Needs common.lua.
--@include flows.lua

-- Where a job is: nil (no such job), 'active', 'completed', 'failed', 'waiting-children',
-- 'delayed' or 'waiting'.
local function job_state(id)
  if not env_exists(A.base, id) then return nil end
  if redis.call('ZSCORE', K.active, id) then return 'active' end
  local s = redis.call('HGET', state_key(A.base, id), 's')
  if s == 'completed' or s == 'failed' or s == 'waiting-children' then return s end
  if redis.call('ZSCORE', K.delayed, id) then return 'delayed' end
  return 'waiting'
end

-- Take a (not active) job out of the set or list that holds it in state `prev`.
local function detach_job(id, prev)
  if prev == 'waiting' then
    local _, _, group = grp_parse(redis.call('HGET', K.priorities, id))
    if group then
      grp_detach(id, group)
    elseif redis.call('ZREM', K.prio, id) == 0 then
      redis.call('LREM', K.wait, 1, id)
    end
  elseif prev == 'delayed' then
    redis.call('ZREM', K.delayed, id)
  elseif prev == 'completed' then
    redis.call('ZREM', K.completed, id)
  elseif prev == 'failed' then
    redis.call('ZREM', K.failed, id)
  elseif prev == 'waiting-children' then
    redis.call('ZREM', queue_keys(A.base).waiting_children, id)
  end
end

-- Delete a detached job's keys (envelope, state, log) and announce it.
local function forget_job(id, prev, reason, now)
  if prev ~= 'completed' and prev ~= 'failed' then
    -- a flow child that had not ended ends now, for its parent (before its link is deleted)
    local why = reason
    if why == '' then why = 'removed' end
    flow_child_ended(A.base, id, false, '', 'CANCELLED', why, now)
  end
  redis.call('HDEL', K.cancels, id)
  redis.call('HDEL', K.costs, id)
  delete_job(A.base, K.priorities, id)
  emit(K.events, A.maxlen, 'ev', 'removed', 'id', id, 'prev', prev, 'reason', reason, 'ts', now)
end

-- Creation time (ms) of a job from its envelope; 0 when the envelope is gone.
local function created_ms(id)
  local env = env_get(A.base, id)
  if not env then return 0 end
  return tonumber(string.match(env, '"ts":(%d+)}$') or '0')
end
