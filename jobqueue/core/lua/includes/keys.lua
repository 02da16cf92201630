-- Key names of one job, built from the queue's base '<prefix>:{<queue>}:' passed in ARGV: the
-- Lua side of jobqueue.core.keys.QueueKeys.jobs/state/logs (tests/unit checks both agree).
-- Every script declares its queue keys in its header (the loader turns them into the table K);
-- only these per-job names are built inside scripts, all in the queue's hash slot.

-- A job's JSON envelope is the field `<id>` of its queue's hash `jobs` (one hash per queue:
-- ~40 B less per waiting job than a string key each). Jobs written before that hash existed
-- keep theirs in the string key `j:<id>` until they are removed: reads fall back to it on a
-- miss, removal deletes both (in common.lua). Nothing but these helpers and that removal touch
-- either; `base` is the job's queue's (a flow node's may be another queue of the script's hash
-- slot).
local function jobs_key(base)
  return base .. 'jobs'
end

local function legacy_job_key(base, id)
  return base .. 'j:' .. id
end

-- The envelope, or false when no such job.
local function env_get(base, id)
  local env = redis.call('HGET', jobs_key(base), id)
  if env then return env end
  return redis.call('GET', legacy_job_key(base, id))
end

-- The envelopes of the jobs `ids` in order (false for no such job): one HMGET for a batch
-- (in commands of at most 1000 fields, as common.lua's call_batched), not an HGET each.
local function envs_get(base, ids)
  local out, key = {}, jobs_key(base)
  for i = 1, #ids, 1000 do
    local part = redis.call('HMGET', key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #part do
      local n = i + j - 1
      out[n] = part[j] or redis.call('GET', legacy_job_key(base, ids[n]))
    end
  end
  return out
end

local function env_exists(base, id)
  return redis.call('HEXISTS', jobs_key(base), id) == 1
    or redis.call('EXISTS', legacy_job_key(base, id)) == 1
end

-- Write (or overwrite) the envelope.
local function env_set(base, id, body)
  redis.call('HSET', jobs_key(base), id, body)
end

-- Write the envelope only if no job has the id; returns whether it was written. `legacy`: a
-- string key from before the hash counts too (one EXISTS more, ~0.6 us; add.lua skips it for
-- ids its counter makes, which no job written before could have unless a caller gave it one).
local function env_set_nx(base, id, body, legacy)
  if legacy and redis.call('EXISTS', legacy_job_key(base, id)) == 1 then return false end
  return redis.call('HSETNX', jobs_key(base), id, body) == 1
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
    groups = base .. 'groups', jobs = base .. 'jobs'}
end

-- The zset of the waiting jobs of one group (includes/groups.lua).
local function group_key(base, group)
  return base .. 'gz:' .. group
end

-- The string naming the job that holds a deduplication key (includes/dedup.lua).
local function dedup_key(base, key)
  return base .. 'dd:' .. key
end
