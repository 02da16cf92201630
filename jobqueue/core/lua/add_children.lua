#!lua
--[[ add_children: a running job adds children (dynamic flow: BullMQ's step jobs), fenced by
its lease token, atomically: all or nothing. Children may have children; every node's queue is
in the running job's hash slot (named by its base). The job goes on running; it waits for its
children when it ends its attempt with outcome 'w' (finish.lua, includes/flow_wait.lua).
Idempotent per child id: a direct child whose reference '<queue>:<id>' the job still waits for,
or whose end it recorded (results, failures), or that exists linked to this job, is left as it
is with everything under it (a retried handler adds nothing twice); any other existing id
refuses the whole call.
KEYS: active cancels jobs
ARGV:
  base        '<prefix>:{<queue>}:' of the running job's queue
  maxlen      cap of the event streams
  job         the running job's id
  token       its lease token (fencing)
  n           how many nodes follow
  per node:
  qbase       the base of the node's queue (same hash slot as `base`)
  queue       the node's queue name (its parent's reference to it is '<queue>:<id>')
  id          the job id ('' = the next value of its queue's counter)
  name        the job name, for the event
  envelope    the job's JSON object; the server's creation time is appended to it
  delay_ms    0 = ready now (a node with children has none)
  priority    0 = the FIFO list, else the priority zset
  cost        what it costs of the shared limiter ('' = its queue's default)
  parent      index of its parent among the nodes (from 0), -1 for the running job
  on_failure  'fail', 'ignore' or 'continue' (what its parent does when it fails)
  group       '<cap>:<group>' (cap 0 = none): the node waits in its group (groups.lua); ''
              = no group
EVENTS: added
Returns: {1, added, id1, ..., idn}: how many jobs were written (event `added` each), then every
node's id (written or left as it was); {-2} the token no longer holds the job; {-8} the job is
being cancelled; {-7, index} the node at `index` has the id of an unrelated existing job.
Nothing is written unless the reply is 1.
]]
--@include common.lua
--@include flow_tree.lua

if redis.call('HGET', state_key(A.base, A.job), 'k') ~= A.token
    or not redis.call('ZSCORE', K.active, A.job) then
  return {-2}
end
-- cancel_tree ran while it runs: nothing of the tree may start afterwards
if redis.call('HEXISTS', K.cancels, A.job) == 1 then return {-8} end

local n = tonumber(A.n)
local nodes, kids = flow_read_nodes(n)
local deps = deps_key(A.base, A.job)
local results, failures = results_key(A.base, A.job), failures_key(A.base, A.job)

-- a direct child the job knows already (pending, ended, or linked to it)
local function known_child(nd)
  local ref = nd.queue .. ':' .. nd.id
  if redis.call('HEXISTS', deps, ref) == 1 or redis.call('HEXISTS', results, ref) == 1
      or redis.call('HEXISTS', failures, ref) == 1 then
    return true
  end
  local link = redis.call('HMGET', state_key(nd.qbase, nd.id), 'pb', 'pi')
  return link[1] == A.base and link[2] == A.job
end

-- every check before the first write: a refused call leaves nothing behind
local skip = {}
for i = 1, n do
  local nd = nodes[i]
  if nd.parent >= 0 and skip[nd.parent + 1] then
    skip[i] = true
  elseif nd.id ~= '' then
    if nd.parent < 0 and known_child(nd) then
      skip[i] = true
    elseif env_exists(nd.qbase, nd.id) then
      return {-7, i - 1}
    end
  end
end

local now = now_ms()
local ids = {}
local out = {1, 0}
for i = 1, n do
  local nd = nodes[i]
  if skip[i] then
    ids[i] = nd.id
  else
    local pbase, pid = A.base, A.job
    if nd.parent >= 0 then pbase, pid = nodes[nd.parent + 1].qbase, ids[nd.parent + 1] end
    ids[i] = flow_store_node(nd, pbase, pid, kids[i], now)
    out[2] = out[2] + 1
  end
  out[#out + 1] = ids[i]
end
return out
