#!lua flags=allow-oom
--[[ finish: record a batch of attempt outcomes, then take jobs for the freed slots (one round
trip both reports and fetches). Kinds of outcome: 'c' completed; 'f' a failed attempt, retried
later or failed for good; 'r' rate limited: the job is deferred without spending an attempt and
the whole queue is held until then (a rate limit belongs to the API key, not the job); 'd'
deferred: the same for this job only; 'b' deferred after a server-side failure on a queue whose
shared limiter has a circuit breaker: no attempt spent, the failure counts towards opening the
breaker, and the job fails once it waited longer than the breaker's max_wait; 'h' handed back
(worker shutdown): to the front of the queue at once; 'w' waiting for children: the job added
children while it ran (add_children.lua) and waits for them without spending an attempt, in
'waiting-children', or ready at once when they all ended already (includes/flow_wait.lua). On
a queue with a shared limiter a rate limit holds every queue of the limiter, and outcomes drive
its breaker (a completion closes it, a 'b' deferral counts as a server-side failure).
KEYS: wait prio priorities delayed active meta limiter limited marker events id_counter
  failed groups completed cancels shared_limiter shared_hold breaker breaker_fails costs
  jobs
ARGV:
  base               '<prefix>:{<queue>}:'
  maxlen             cap of the event stream
  take               most jobs to take afterwards (see includes/take.lua)
  worker             the worker's id (the token's prefix)
  lease_ms           lease of each job taken
  concurrency        cap on active jobs across all workers (0 = none)
  rate_max           job starts per rate period (0 = no rate limit)
  rate_per_ms        the rate period
  limiter            the shared limiter's name ('' = none)
  buckets            its configured buckets, 'name=capacity/per_ms,...'
  cost               the queue's default job cost, 'name=n,...'
  breaker            its breaker, 'failures/window_ms/cooldown_ms/max_wait_ms' ('' = none)
  keep_completed     completed jobs kept (-1 = all)
  keep_completed_ms  age of the oldest completed job kept (-1 = forever)
  keep_failed        failed jobs kept (-1 = all)
  keep_failed_ms     age of the oldest failed job kept (-1 = forever)
  m                  how many outcomes follow
  per outcome:
  id                 the job
  token              the lease token of the attempt (fencing)
  kind               c completed, f failed attempt, r rate limited, d deferred, b deferred
                     by the breaker, h handed back, w waiting for children
  payload            result JSON (c) or error message (f, r, d)
  error_type         the error type (f, r, d)
  delay_ms           f: retry delay, < 0 = not retryable; r, d, b: deferral
  limit              f: max attempts in all; r, d: max deferrals; b: unused
EVENTS: completed failed retrying returned active breaker waiting waiting-children
Returns: {codes, take_reply, active}: codes[i] is 1 (recorded, the job finished), 2 (recorded,
it will run again), or -2 (lease lost: refused, nothing written for it); take_reply as `take`;
active: the jobs active now on the queue, this worker's and others' (a worker whose
`calls_in_flight` is "auto" learns from it that other workers are draining the queue).
]]
--@include common.lua
--@include limiter.lua
--@include breaker.lua
--@include flows.lua
--@include flow_wait.lua
--@include take.lua

local now = now_ms()
local now_s = tostring(now) -- given to redis.call as text: printf'd once, not per job
local shared = A.limiter ~= ''
local any_cancels = redis.call('HLEN', K.cancels) > 0
local m = tonumber(A.m)
local codes = {}
local done_ok, done_failed = false, false
local completed = {} -- (time, id) pairs of the jobs completed, for one ZADD
-- the outcome's job is a flow child (its state hash links a parent): read with its token
local in_flow = false

local function fail_final(id, skey, made, etype, msg)
  redis.call('HSET', skey, 's', 'failed', 'em', msg, 'et', etype, 'tf', now, 'a', made)
  redis.call('ZADD', K.failed, now, id)
  emit(K.events, A.maxlen, 'ev', 'failed', 'id', id, 'a', made, 'et', etype, 'em', msg,
    'ts', now)
  if in_flow then flow_child_ended(A.base, id, false, '', etype, msg, now) end
  done_failed = true
end

local function retry_later(id, skey, made, etype, msg, delay)
  redis.call('HSET', skey, 'em', msg, 'et', etype, 'a', made)
  redis.call('HDEL', skey, 's')
  local seq = redis.call('INCR', K.id_counter)
  redis.call('ZADD', K.delayed, delayed_score(now + delay, seq), id)
  emit(K.events, A.maxlen, 'ev', 'retrying', 'id', id, 'a', made, 'et', etype, 'em', msg,
    'st', 'delayed', 'delay', delay, 'ts', now)
end

-- Fencing: only the holder of the current token may finish, and only an active job, once.
-- Whether each job is active is read for the whole batch in one ZMSCORE, and the holders'
-- jobs leave `active` in one ZREM after the loop (nothing in the loop reads `active`): two
-- commands a call, not a ZREM per outcome.
local ids = {}
for i = 0, m - 1 do ids[i + 1] = (argv_group(i)) end
local live = {}
for i = 1, m, 1000 do
  local part = redis.call('ZMSCORE', K.active, unpack(ids, i, math.min(i + 999, m)))
  for j = 1, #part do live[i + j - 1] = part[j] end
end
local held = {} -- ids of the outcomes recorded, out of `active` after the loop
local seen = {} -- and the same as a set: a second outcome of one job in a batch is refused

for i = 0, m - 1 do
  local id, token, kind, payload, etype, delay, limit = argv_group(i)
  if kind ~= 'c' then delay, limit = tonumber(delay), tonumber(limit) end
  local skey = state_key(A.base, id)
  local st = redis.call('HMGET', skey, 'k', 'a', 'pb', 'g')
  in_flow = st[3] ~= false
  if st[1] ~= token or not live[i + 1] or seen[id] then
    codes[#codes + 1] = -2
  else
    seen[id] = true
    held[#held + 1] = id
    -- a cancel flagged while it ran (a job waiting for children must not come back)
    local why = any_cancels and redis.call('HGET', K.cancels, id)
    if why then redis.call('HDEL', K.cancels, id) end
    if st[4] then grp_left(st[4]) end -- a slot of its group is free
    local made = count_number(st[2] or '0')
    if kind == 'b' then
      payload = payload .. brk_failure(id, now)
    end
    if kind == 'c' then
      if shared then brk_close(now) end
      made = made + 1
      -- the emptied token fences this attempt off like a deleted one, in the same command
      local made_s = count_text(made)
      redis.call('HSET', skey, 's', 'completed', 'r', payload, 'tf', now_s, 'a', made_s, 'k', '')
      completed[#completed + 1] = now_s
      completed[#completed + 1] = id
      emit(K.events, A.maxlen, 'ev', 'completed', 'id', id, 'a', made_s, 'ts', now_s)
      if in_flow then flow_child_ended(A.base, id, true, payload, '', '', now) end
      done_ok = true
      codes[#codes + 1] = 1
    elseif kind == 'f' then
      redis.call('HDEL', skey, 'k')
      made = made + 1
      if delay < 0 or made >= limit then
        fail_final(id, skey, made, etype, payload)
        codes[#codes + 1] = 1
      else
        retry_later(id, skey, made, etype, payload, delay)
        codes[#codes + 1] = 2
      end
    elseif kind == 'r' or kind == 'd' then
      redis.call('HDEL', skey, 'k')
      local deferrals = redis.call('HINCRBY', skey, 'rl', 1)
      if deferrals > limit then
        fail_final(id, skey, made, etype, payload)
        codes[#codes + 1] = 1
      else
        retry_later(id, skey, made, etype, payload, delay)
        if kind == 'r' and delay > 0 then
          -- every queue on the shared limiter, or this queue alone, waits out the Retry-After
          local hold = K.limited
          if shared then hold = K.shared_hold end
          if redis.call('PTTL', hold) < delay then redis.call('SET', hold, '1', 'PX', delay) end
        end
        codes[#codes + 1] = 2
      end
    elseif kind == 'b' then
      redis.call('HDEL', skey, 'k')
      local first = tonumber(redis.call('HGET', skey, 'bw'))
      if not first then
        first = now
        redis.call('HSET', skey, 'bw', now)
      end
      local cfg = brk_config()
      if cfg and now - first > cfg.max_wait then
        fail_final(id, skey, made, etype, 'the provider stayed unavailable for more than ' ..
          math.floor(cfg.max_wait / 1000) .. 's; last error: ' .. payload)
        codes[#codes + 1] = 1
      else
        retry_later(id, skey, made, etype, payload, delay)
        codes[#codes + 1] = 2
      end
    elseif kind == 'w' then
      local code = flow_wait_children(A.base, id, skey, made, why, now)
      if code == 1 then done_failed = true end
      codes[#codes + 1] = code
    else -- 'h'
      redis.call('HDEL', skey, 's', 'k')
      push_ready(K, id, true)
      emit(K.events, A.maxlen, 'ev', 'returned', 'id', id, 'ts', now)
      codes[#codes + 1] = 2
    end
  end
end

call_batched('ZREM', K.active, held)
call_batched('ZADD', K.completed, completed)
if done_ok then
  trim_finished(A.base, K.priorities, K.completed, A.keep_completed, A.keep_completed_ms, now)
end
if done_failed then
  trim_finished(A.base, K.priorities, K.failed, A.keep_failed, A.keep_failed_ms, now)
end

local reply = take(A.take, now)
if tonumber(A.take) == 0 and m > 0 and ready_count() > 0 then
  -- this worker is full but slots were freed: let another worker use them
  local c = tonumber(A.concurrency)
  if c <= 0 or redis.call('ZCARD', K.active) < c then poke(K.marker) end
end
return {codes, reply, redis.call('ZCARD', K.active)}
