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

-- The zset of the waiting jobs of one group (includes/groups.lua).
local function group_key(base, group)
  return base .. 'gz:' .. group
end

-- The string naming the job that holds a deduplication key (includes/dedup.lua).
local function dedup_key(base, key)
  return base .. 'dd:' .. key
end
