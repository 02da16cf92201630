-- Dynamic children: a running job that added children (add_children.lua) ends its attempt by
-- waiting for them (finish.lua, outcome 'w'). Needs common.lua, flows.lua and A.maxlen. Emits
-- `waiting-children`, `waiting`, `failed` on the job's queue stream.
--
-- Why the fan-in stays exactly once: a child that ends while its parent still runs removes
-- itself from the parent's dependencies hash but cannot release the parent (it is not in
-- waiting_children: flow_release_parent's ZREM finds nothing). The wait outcome below is the
-- one step that then looks at the dependencies: pending ones park the parent in
-- waiting_children (the last child's end releases it), none left makes it ready at once. Both
-- are atomic scripts of one slot, so whichever runs second sees what the first did: the
-- wake-up is neither lost nor given twice.

-- The running job `id` (queue at `base`, state hash `skey`, `made` attempts) ends its attempt
-- by waiting for its children; its lease token is already checked. No attempt is spent; its
-- step count 'ws' goes up. `why` is a cancel reason flagged while it ran (false if none).
-- Returns 1 when it ends for good (cancelled, or a child with on_failure 'fail' failed while
-- it ran: 'cx'), else 2 (it will run again).
local function flow_wait_children(base, id, skey, made, why, now)
  local q = queue_keys(base)
  redis.call('HDEL', skey, 'k')
  local step = redis.call('HINCRBY', skey, 'ws', 1)
  local et, em = 'CANCELLED', why
  if not em then et, em = 'CHILD_FAILED', redis.call('HGET', skey, 'cx') end
  if em then
    -- its pending children run on; their ends find no dependencies left
    redis.call('DEL', deps_key(base, id))
    redis.call('HSET', skey, 's', 'failed', 'em', em, 'et', et, 'tf', now)
    redis.call('ZADD', q.failed, now, id)
    emit(q.events, A.maxlen, 'ev', 'failed', 'id', id, 'a', made, 'et', et, 'em', em,
      'ts', now)
    flow_child_ended(base, id, false, '', et, em, now)
    return 1
  end
  if redis.call('EXISTS', deps_key(base, id)) == 1 then
    redis.call('HSET', skey, 's', 'waiting-children')
    redis.call('ZADD', q.waiting_children, now, id)
    emit(q.events, A.maxlen, 'ev', 'waiting-children', 'id', id, 'step', step, 'ts', now)
  else
    -- every child ended while it ran: their ends could not release it, this step does
    redis.call('HDEL', skey, 's')
    push_ready(q, id, false)
    poke(q.marker)
    emit(q.events, A.maxlen, 'ev', 'waiting', 'id', id, 'prev', 'active', 'step', step,
      'ts', now)
  end
  return 2
end
