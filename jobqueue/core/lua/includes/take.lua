-- take(n, now): promotes due delayed jobs, then moves up to n ready jobs to active under the
-- global concurrency cap, the queue's token bucket and, when the queue is on a shared limiter
-- (A.limiter ~= ''), the limiter's 429 hold, its breaker and its buckets (each job's cost is
-- reserved as it starts; a job whose cost exceeds a bucket's capacity fails at once). Each job
-- gets a lease and a fencing token `<worker>:<starts>`. Uses the keys wait, prio, priorities,
-- delayed, active, meta, limiter, limited, marker, events, id_counter, failed of K (and the
-- shared limiter's, see limiter.lua), and A.base, A.maxlen, A.worker, A.lease_ms,
-- A.concurrency, A.rate_max, A.rate_per_ms; K.groups when group tokens are ready (groups.lua:
-- a token stands for its group's head job). Needs common.lua and limiter.lua. Emits `active`
-- per job taken, `failed` per job whose cost can never fit, `breaker` on a half-open trial.
-- Returns a flat array {wait_hint_ms, id1, envelope1, token1, attempt1, step1, id2, ...}
-- (step: how many times the job waited for children it added, includes/flow_wait.lua):
-- wait_hint_ms is -1 when jobs were taken, else how long a worker may block before anything
-- can change on its own (0 = until poked). A failed job ends for its flow parent (flows.lua).
--@include flows.lua

local function promote_due(now)
  local due = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now * 1024 + 1023, 'LIMIT', 0, 1000)
  for i = 1, #due do
    redis.call('ZREM', K.delayed, due[i])
    push_ready(K, due[i], false)
  end
end

local function next_delayed_ms(now)
  local first = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = math.floor(tonumber(first[2]) / 1024) - now
    if wait < 1 then wait = 1 end
    return wait
  end
  return 0
end

local function min_hint(a, b)
  if a <= 0 then return b end
  if b <= 0 then return a end
  if a < b then return a end
  return b
end

-- Ready jobs in the FIFO list and in the priority zset, apart.
local function ready_counts()
  return redis.call('LLEN', K.wait), redis.call('ZCARD', K.prio)
end

local function ready_count()
  local listed, prio = ready_counts()
  return listed + prio
end

-- The next `cap` ready ids in take order (priority > 0, the FIFO list, priority < 0), left
-- in place, with where each one is: 'z' (the priority zset) or 'l' (the list).
local function peek_ready(cap)
  local ids, from = {}, {}
  local high = redis.call('ZRANGEBYSCORE', K.prio, '-inf', '(0', 'LIMIT', 0, cap)
  for i = 1, #high do ids[#ids + 1] = high[i]; from[#from + 1] = 'z' end
  if #ids < cap then
    local listed = redis.call('LRANGE', K.wait, 0, cap - #ids - 1)
    for i = 1, #listed do ids[#ids + 1] = listed[i]; from[#from + 1] = 'l' end
  end
  if #ids < cap then
    local low = redis.call('ZRANGEBYSCORE', K.prio, '0', '+inf', 'LIMIT', 0, cap - #ids)
    for i = 1, #low do ids[#ids + 1] = low[i]; from[#from + 1] = 'z' end
  end
  return ids, from
end

-- Take the first `k` ids of a peek out of the ready list and zset.
local function unready(ids, from, k)
  local listed = 0
  for i = 1, k do
    if from[i] == 'z' then redis.call('ZREM', K.prio, ids[i]) else listed = listed + 1 end
  end
  if listed > 0 then redis.call('LPOP', K.wait, listed) end
end

-- A job whose cost can never fit the limiter fails for good, without running.
local function reject_cost(id, bucket, now)
  local msg = 'its cost of ' .. bucket .. ' exceeds the capacity of limiter ' .. A.limiter ..
    ': it can never start'
  local skey = state_key(A.base, id)
  redis.call('HSET', skey, 's', 'failed', 'em', msg, 'et', 'VALIDATION_ERROR', 'tf', now)
  redis.call('HDEL', K.costs, id)
  redis.call('ZADD', K.failed, now, id)
  emit(K.events, A.maxlen, 'ev', 'failed', 'id', id, 'a', 0, 'et', 'VALIDATION_ERROR',
    'em', msg, 'ts', now)
  flow_child_ended(A.base, id, false, '', 'VALIDATION_ERROR', msg, now)
end

-- Which of up to `cap` ready jobs the shared limiter lets start now (their costs reserved),
-- in take order; and how long to wait when it stopped at a job it cannot pay yet. A group
-- token stands for its group's head job (groups.lua); rounds repeat while tokens were met.
local function limiter_pick(cap, now)
  local hold = redis.call('PTTL', K.shared_hold)
  if hold > 0 then return {}, {}, hold, nil end
  local gate, left = brk_gate(now)
  if gate == 'open' or gate == 'busy' then return {}, {}, left, nil end
  if gate == 'trial' then cap = 1 end
  local b = lim_load(now)
  local picked, costs, wait, grouped = {}, {}, 0, nil
  while true do
    local ids, from = peek_ready(cap - #picked)
    local heads, tokens, processed = {}, 0, 0
    for i = 1, #ids do
      if grp_is_token(ids[i]) then
        -- a round ends at a token: it goes back behind the members peeked after it
        for j = #ids, i + 1, -1 do ids[j] = nil end
        tokens = 1
        local g = string.sub(ids[i], 2)
        heads[i] = false -- at its cap, or empty: the token is parked or dropped
        if not grp_at_cap(g) then
          heads[i] = redis.call('ZRANGE', group_key(A.base, g), 0, 0)[1] or false
        end
        break
      end
    end
    local verdicts = {}
    for i = 1, #ids do
      local id = heads[i]
      if id == nil then id = ids[i] end
      if id then
        local cost = lim_cost_of(id)
        local verdict, detail = lim_check(b, cost)
        if verdict == 'wait' then
          wait = detail
          break
        end
        verdicts[i] = verdict
        if verdict == 'never' then
          reject_cost(id, detail, now)
        else
          lim_apply(b, cost, -1)
          picked[#picked + 1] = id
          costs[#costs + 1] = cost
        end
      end
      processed = i
    end
    unready(ids, from, processed)
    for i = 1, processed do
      if heads[i] ~= nil then
        local g = string.sub(ids[i], 2)
        local job = grp_take(g) -- the head peeked above, or nil (parked, dropped)
        if job and verdicts[i] == 'never' then
          grp_left(g)
        elseif job then
          grouped = grouped or {}
          grouped[job] = g
        end
      end
    end
    if tokens == 0 or wait > 0 or processed == 0 or #picked >= cap then break end
  end
  lim_save(b, now)
  if gate == 'trial' and #picked > 0 then brk_start_trial(picked[1], now) end
  return picked, costs, wait, grouped
end

-- Pop the next `cap` ready members in take order: priority > 0 first (negative scores),
-- then the FIFO list, then priority < 0. Members may be group tokens (groups.lua). `prio`:
-- how many the priority zset holds (0: it is not looked at).
local function pop_ready(cap, prio)
  local ids = {}
  if prio > 0 then
    local high = redis.call('ZRANGEBYSCORE', K.prio, '-inf', '(0', 'LIMIT', 0, cap)
    for i = 1, #high do
      redis.call('ZREM', K.prio, high[i])
      ids[#ids + 1] = high[i]
    end
  end
  if #ids < cap then
    local popped = redis.call('LPOP', K.wait, cap - #ids)
    if popped then
      for i = 1, #popped do ids[#ids + 1] = popped[i] end
    end
  end
  if #ids < cap and prio > 0 then
    local low = redis.call('ZRANGE', K.prio, 0, cap - #ids - 1)
    for i = 1, #low do
      redis.call('ZREM', K.prio, low[i])
      ids[#ids + 1] = low[i]
    end
  end
  return ids
end

-- The next `cap` ready jobs in take order when group tokens are among them: members are taken
-- up to the first token, which stands for its group's head job (groups.lua) and goes back at
-- the back of its level, so each round looks again from the top.
local function take_grouped(cap)
  local out, of = {}, {}
  while #out < cap do
    local ids, from = peek_ready(cap - #out)
    if #ids == 0 then break end
    local k = #ids
    for i = 1, #ids do
      if grp_is_token(ids[i]) then
        k = i
        break
      end
    end
    unready(ids, from, k)
    for i = 1, k - 1 do out[#out + 1] = ids[i] end
    if grp_is_token(ids[k]) then
      local g = string.sub(ids[k], 2)
      local job = grp_take(g) -- nil: the group is at its cap (its token is parked now)
      if job then
        out[#out + 1] = job
        of[job] = g
      end
    else
      out[#out + 1] = ids[k]
    end
  end
  return out, of
end

local function take(n, now)
  n = tonumber(n)
  local concurrency = tonumber(A.concurrency)
  local rate_max = tonumber(A.rate_max)
  local rate_per = tonumber(A.rate_per_ms)
  promote_due(now)

  if redis.call('HEXISTS', K.meta, 'paused') == 1 then
    return {0}
  end
  local limited = redis.call('PTTL', K.limited)
  if limited > 0 then
    return {min_hint(limited, next_delayed_ms(now))}
  end
  local listed, prio = ready_counts()
  if listed + prio == 0 then
    return {next_delayed_ms(now)}
  end

  local cap = n
  if concurrency > 0 then
    local active_now = redis.call('ZCARD', K.active)
    if concurrency - active_now < cap then cap = concurrency - active_now end
  end

  local tokens = nil
  if rate_max > 0 then
    local b = redis.call('HMGET', K.limiter, 't', 'ts')
    tokens = tonumber(b[1])
    local ts = tonumber(b[2])
    if tokens == nil or ts == nil then
      tokens = rate_max
    else
      local elapsed = now - ts
      if elapsed < 0 then elapsed = 0 end
      tokens = tokens + elapsed * rate_max / rate_per
      if tokens > rate_max then tokens = rate_max end
    end
    if math.floor(tokens) < cap then cap = math.floor(tokens) end
  end

  if cap <= 0 then
    local hint = next_delayed_ms(now)
    if n > 0 and tokens ~= nil and tokens < 1 then
      -- refill time of the next whole token
      hint = min_hint(math.ceil((1 - tokens) * rate_per / rate_max), hint)
    end
    return {hint}
  end

  local ids, costs, limiter_wait, grouped = {}, nil, 0, nil
  local left = nil -- ready jobs left after the plain path popped its own (known without a read)
  if A.limiter ~= '' then
    ids, costs, limiter_wait, grouped = limiter_pick(cap, now)
  else
    local tokens = redis.call('HGET', K.groups, 't')
    if tokens and tokens ~= '0' then
      ids, grouped = take_grouped(cap)
    else
      ids = pop_ready(cap, prio) -- no group has jobs ready: the plain path
      left = listed + prio - #ids
    end
  end

  local out = {-1}
  -- numbers given to redis.call are formatted by printf each time: these once a call
  local now_s = tostring(now)
  local deadline = tostring(now + tonumber(A.lease_ms))
  local taken = 0
  local leases = {} -- (deadline, id) pairs of the jobs taken, for one ZADD
  local envs = envs_get(A.base, ids)
  for i = 1, #ids do
    local id = ids[i]
    local env = envs[i]
    if env then
      local skey = state_key(A.base, id)
      local st = redis.call('HMGET', skey, 'a', 'n', 'ws')
      local made = count_number(st[1] or '0')
      local attempt_s = count_text(made + 1)
      local starts = count_text(count_number(st[2] or '0') + 1)
      local token = A.worker .. ':' .. starts
      -- (no `a`: it is unchanged here, and a job never attempted has none: 0 to its readers)
      redis.call('HSET', skey, 'n', starts, 'k', token, 's', 'active', 'ts', now_s)
      if grouped and grouped[id] then redis.call('HSET', skey, 'g', grouped[id]) end
      if costs then
        -- the reservation a settle refunds (the cost stays with the job for its retries)
        redis.call('HSET', skey, 'lc', costs[i])
        -- a crashed attempt's holds stay spent: the provider may have counted its calls
        redis.call('HDEL', skey, 'ls', 'lx')
        redis.call('HDEL', K.costs, id)
      end
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      emit(K.events, A.maxlen, 'ev', 'active', 'id', id, 'a', attempt_s, 'ts', now_s)
      out[#out + 1] = id
      out[#out + 1] = env
      out[#out + 1] = token
      out[#out + 1] = made + 1
      out[#out + 1] = count_number(st[3] or '0')
      taken = taken + 1
    elseif grouped and grouped[id] then
      grp_left(grouped[id]) -- counted as started by its group, but it is gone
    end
  end
  call_batched('ZADD', K.active, leases)
  if tokens ~= nil and taken > 0 then
    redis.call('HSET', K.limiter, 't', tokens - taken, 'ts', now)
  end
  if #out == 1 then
    out[1] = min_hint(limiter_wait, next_delayed_ms(now))
  end
  -- more work left and room for it: wake another worker
  if taken == n and (left or ready_count()) > 0 then
    local room = concurrency <= 0 or redis.call('ZCARD', K.active) < concurrency
    if room and (tokens == nil or tokens - taken >= 1) then
      poke(K.marker)
    end
  end
  return out
end
