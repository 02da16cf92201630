#!lua
--[[ add_flow: store a tree of jobs atomically: each parent in 'waiting-children' with its
pending children in its dependencies hash, each leaf ready (or delayed). Nodes come parents
first; a node's queue is any queue of the root's hash slot (the same queue, or one of the same
shared limiter), named by its base. Dedup by the root's id: a root that exists already is
returned and nothing is written; a child id that exists already refuses the whole flow.
KEYS: id_counter marker events jobs
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
  group       '<cap>:<group>' (cap 0 = none): the node waits in its group (groups.lua); ''
              = no group
EVENTS: added
Returns: {1, id1, ..., idn} (event `added` per node, `st` waiting-children for parents);
{0, root_id} when the root exists already (nothing written); {-7, index} when the node at
`index` has the id of an existing job (nothing written).
]]
--@include common.lua
--@include flow_tree.lua

local n = tonumber(A.n)
local nodes, kids = flow_read_nodes(n)
-- every check before the first write: a refused flow leaves nothing behind
if nodes[1].id ~= '' and env_exists(nodes[1].qbase, nodes[1].id) then
  return {0, nodes[1].id}
end
for i = 2, n do
  if nodes[i].id ~= '' and env_exists(nodes[i].qbase, nodes[i].id) then
    return {-7, i - 1}
  end
end

local now = now_ms()
local ids = {}
local out = {1}
for i = 1, n do
  local nd = nodes[i]
  local pbase, pid = nil, nil
  if nd.parent >= 0 then pbase, pid = nodes[nd.parent + 1].qbase, ids[nd.parent + 1] end
  ids[i] = flow_store_node(nd, pbase, pid, kids[i], now)
  out[#out + 1] = ids[i]
end
return out
