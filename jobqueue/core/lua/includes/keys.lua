-- Key names of one job, built from the queue's base '<prefix>:{<queue>}:' passed in ARGV: the
-- Lua side of jobqueue.core.keys.QueueKeys.job/state/logs (tests/unit checks both agree).
-- Every script declares its queue keys in its header (the loader turns them into the table K);
-- only these per-job names are built inside scripts, all in the queue's hash slot.

local function job_key(base, id)
  return base .. 'j:' .. id
end

local function state_key(base, id)
  return base .. 's:' .. id
end

local function log_key(base, id)
  return base .. 'l:' .. id
end

-- Flows (includes/flows.lua): a parent's pending children, and what its ended children left.
local function deps_key(base, id)
  return base .. 'd:' .. id
end

local function results_key(base, id)
  return base .. 'cr:' .. id
end

local function failures_key(base, id)
  return base .. 'cf:' .. id
end

-- The keys of another queue of the script's hash slot, from its base (a flow's parent or
-- child on another queue of the same shared limiter: same slot, so one script may touch them).
local function queue_keys(base)
  return {wait = base .. 'wait', prio = base .. 'prio', priorities = base .. 'pri',
    delayed = base .. 'delayed', active = base .. 'active', completed = base .. 'completed',
    failed = base .. 'failed', id_counter = base .. 'id', marker = base .. 'marker',
    events = base .. 'events', cancels = base .. 'cancel', cancel_channel = base .. 'cancel-ch',
    costs = base .. 'costs', waiting_children = base .. 'wc', base = base,
    groups = base .. 'groups'}
end

-- The zset of the waiting jobs of one group (includes/groups.lua).
local function group_key(base, group)
  return base .. 'gz:' .. group
end

-- The string naming the job that holds a deduplication key (includes/dedup.lua).
local function dedup_key(base, key)
  return base .. 'dd:' .. key
end
