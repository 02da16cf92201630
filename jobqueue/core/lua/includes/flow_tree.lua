-- Storing the jobs of a tree: a whole flow (add_flow.lua) or a running job's new children
-- (add_children.lua). Nodes come parents first as ARGV groups (qbase queue id name envelope
-- delay_ms priority cost parent on_failure group). Needs common.lua and A.maxlen. Emits `added`
-- on each job's queue stream. A node of a group waits in its group once it is ready (now, when
-- its delay is over, or when its children have ended): its K.priorities entry names the group.

-- The nodes and, by index (from 1), whether a node has children of its own.
local function flow_read_nodes(n)
  local nodes, kids = {}, {}
  for i = 0, n - 1 do
    local qbase, queue, id, name, env, delay, priority, cost, parent, policy, group =
      argv_group(i)
    nodes[i + 1] = {qbase = qbase, queue = queue, id = id, name = name, env = env,
      delay = tonumber(delay), priority = tonumber(priority), cost = cost,
      parent = tonumber(parent), policy = policy, group = group}
    if tonumber(parent) >= 0 then kids[tonumber(parent) + 1] = true end
  end
  return nodes, kids
end

-- Store one job: its envelope (with the server's creation time), its link to its parent
-- (`pbase`, `pid`; nil for a root) and its place: 'waiting-children' when it has children,
-- else delayed or ready. Returns its id ('' in the node: its queue's counter gives one).
local function flow_store_node(nd, pbase, pid, has_kids, now)
  local q = queue_keys(nd.qbase)
  local seq = redis.call('INCR', q.id_counter)
  local id = nd.id
  if id == '' then id = tostring(seq) end
  env_set(nd.qbase, id, string.sub(nd.env, 1, -2) .. ',"ts":' .. now .. '}')
  if nd.group ~= '' then
    local cap, g = string.match(nd.group, '^(%d+):(.*)$')
    redis.call('HSET', q.priorities, id, nd.priority .. ':' .. cap .. ':' .. g)
  elseif nd.priority ~= 0 then
    redis.call('HSET', q.priorities, id, nd.priority)
  end
  if nd.cost ~= '' then redis.call('HSET', q.costs, id, nd.cost) end
  if pbase then
    local ref = nd.queue .. ':' .. id
    redis.call('HSET', deps_key(pbase, pid), ref, nd.qbase)
    redis.call('HSET', state_key(nd.qbase, id), 'pb', pbase, 'pi', pid, 'pr', ref,
      'pf', nd.policy)
  end
  local st = 'waiting'
  if has_kids then
    st = 'waiting-children'
    redis.call('HSET', state_key(nd.qbase, id), 's', 'waiting-children')
    redis.call('ZADD', q.waiting_children, now, id)
  elseif nd.delay > 0 then
    st = 'delayed'
    redis.call('ZADD', q.delayed, delayed_score(now + nd.delay, seq), id)
  elseif nd.group ~= '' then
    push_ready(q, id, false)  -- into its group (groups.lua), as the entry above says
  elseif nd.priority == 0 then
    redis.call('RPUSH', q.wait, id)
  else
    redis.call('ZADD', q.prio, prio_score(nd.priority, seq), id)
  end
  emit(q.events, A.maxlen, 'ev', 'added', 'id', id, 'name', nd.name, 'st', st, 'ts', now)
  if not has_kids then poke(q.marker) end
  return id
end
