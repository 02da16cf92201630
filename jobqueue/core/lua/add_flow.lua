#!lua
--[[ add_flow: store a tree of jobs atomically: each parent in 'waiting-children' with its
pending children in its dependencies hash, each leaf ready (or delayed). Nodes come parents
first; a node's queue is any queue of the root's hash slot (the same queue, or one of the same
shared limiter), named by its base. Dedup by the root's id: a root that exists already is
returned and nothing is written; a child id that exists already refuses the whole flow.
KEYS: id_counter marker events
ARGV:
  base        '<prefix>:{<queue>}:' of the root's queue
  maxlen      cap of the event streams
  n           how many nodes follow
  per node:
  qbase       the base of the node's queue (same hash slot as `base`)
  queue       the node's queue name (its children's reference is '<queue>:<id>')
  id          the job id ('' = the next value of its queue's counter)
  name        the job name, for the event
  envelope    the job's JSON object; the server's creation time is appended to it
  delay_ms    0 = ready now (a node with children has none)
  priority    0 = the FIFO list, else the priority zset
  cost        what it costs of the shared limiter ('' = its queue's default)
  parent      index of its parent among the nodes (from 0), -1 for the root
  on_failure  'fail', 'ignore' or 'continue' (what the parent does when it fails; '' for the
              root)
EVENTS: added
Returns: {1, id1, ..., idn} (event `added` per node, `st` waiting-children for parents);
{0, root_id} when the root exists already (nothing written); {-7, index} when the node at
`index` has the id of an existing job (nothing written).
]]
--@include common.lua

local n = tonumber(A.n)
local nodes, kids = {}, {}
for i = 0, n - 1 do
  local qbase, queue, id, name, env, delay, priority, cost, parent, policy = argv_group(i)
  nodes[i + 1] = {qbase = qbase, queue = queue, id = id, name = name, env = env,
    delay = tonumber(delay), priority = tonumber(priority), cost = cost,
    parent = tonumber(parent), policy = policy}
  if tonumber(parent) >= 0 then kids[tonumber(parent) + 1] = true end
end
-- every check before the first write: a refused flow leaves nothing behind
if nodes[1].id ~= '' and redis.call('EXISTS', job_key(nodes[1].qbase, nodes[1].id)) == 1 then
  return {0, nodes[1].id}
end
for i = 2, n do
  if nodes[i].id ~= '' and redis.call('EXISTS', job_key(nodes[i].qbase, nodes[i].id)) == 1 then
    return {-7, i - 1}
  end
end

local now = now_ms()
local ids = {}
local out = {1}
for i = 1, n do
  local nd = nodes[i]
  local q = queue_keys(nd.qbase)
  local seq = redis.call('INCR', q.id_counter)
  local id = nd.id
  if id == '' then id = tostring(seq) end
  ids[i] = id
  redis.call('SET', job_key(nd.qbase, id), string.sub(nd.env, 1, -2) .. ',"ts":' .. now .. '}')
  if nd.priority ~= 0 then redis.call('HSET', q.priorities, id, nd.priority) end
  if nd.cost ~= '' then redis.call('HSET', q.costs, id, nd.cost) end
  if nd.parent >= 0 then
    local p = nodes[nd.parent + 1]
    local ref = nd.queue .. ':' .. id
    redis.call('HSET', deps_key(p.qbase, ids[nd.parent + 1]), ref, nd.qbase)
    redis.call('HSET', state_key(nd.qbase, id), 'pb', p.qbase, 'pi', ids[nd.parent + 1],
      'pr', ref, 'pf', nd.policy)
  end
  local st = 'waiting'
  if kids[i] then
    st = 'waiting-children'
    redis.call('HSET', state_key(nd.qbase, id), 's', 'waiting-children')
    redis.call('ZADD', q.waiting_children, now, id)
  elseif nd.delay > 0 then
    st = 'delayed'
    redis.call('ZADD', q.delayed, delayed_score(now + nd.delay, seq), id)
  elseif nd.priority == 0 then
    redis.call('RPUSH', q.wait, id)
  else
    redis.call('ZADD', q.prio, prio_score(nd.priority, seq), id)
  end
  emit(q.events, A.maxlen, 'ev', 'added', 'id', id, 'name', nd.name, 'st', st, 'ts', now)
  if not kids[i] then poke(q.marker) end
  out[#out + 1] = id
end
return out
