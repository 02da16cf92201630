-- The circuit breaker of a queue's shared limiter: K.breaker (state, until, trial...) and
-- K.breaker_fails (recent server-side failures), A.breaker ('failures/window_ms/cooldown_ms/
-- max_wait_ms' or '' = none), A.limiter, A.lease_ms, and K.events / A.maxlen for its events.
-- Needs common.lua. Emits `breaker`.

-- The breaker's settings, or nil when the limiter has none.
local function brk_config()
  local n, w, c, m = string.match(A.breaker or '', '^(%d+)/(%d+)/(%d+)/(%d+)$')
  if not n then return nil end
  return {failures = tonumber(n), window = tonumber(w), cooldown = tonumber(c),
    max_wait = tonumber(m)}
end

local function brk_event(state, now, detail)
  emit(K.events, A.maxlen, 'ev', 'breaker', 'limiter', A.limiter, 'state', state,
    'detail', detail, 'ts', now)
end

-- May jobs start? Returns 'closed'; 'open', ms left of the cool-down; or 'trial' (one job may
-- start, as the half-open trial) / 'busy', ms left of the running trial's lease.
local function brk_gate(now)
  if not brk_config() then return 'closed', 0 end
  local st = redis.call('HMGET', K.breaker, 'state', 'until', 'trial_until')
  local state = st[1] or 'closed'
  if state == 'closed' then return 'closed', 0 end
  if state == 'open' then
    local left = (tonumber(st[2]) or 0) - now
    if left > 0 then return 'open', left end
  end
  local trial_left = (tonumber(st[3]) or 0) - now
  if trial_left > 0 then return 'busy', trial_left end
  return 'trial', 0
end

-- The job `id` starts as the half-open trial (its lease bounds the trial).
local function brk_start_trial(id, now)
  if redis.call('HGET', K.breaker, 'state') ~= 'half' then
    brk_event('half_open', now, 'a trial job may start')
  end
  redis.call('HSET', K.breaker, 'state', 'half', 'trial', id,
    'trial_until', now + tonumber(A.lease_ms))
end

local function brk_close(now)
  if (redis.call('HGET', K.breaker, 'state') or 'closed') ~= 'closed' then
    redis.call('HSET', K.breaker, 'state', 'closed')
    redis.call('HDEL', K.breaker, 'until', 'trial', 'trial_until')
    redis.call('DEL', K.breaker_fails)
    brk_event('closed', now, 'a call succeeded')
  end
end

-- A server-side failure: opens the breaker after `failures` of them in `window`, or at once
-- when the half-open trial failed. Returns a note on the breaker's state for the job's error.
local function brk_failure(id, now)
  local cfg = brk_config()
  if not cfg then return '' end
  local state = redis.call('HGET', K.breaker, 'state') or 'closed'
  redis.call('ZADD', K.breaker_fails, now, id .. ':' .. now)
  redis.call('ZREMRANGEBYSCORE', K.breaker_fails, '-inf', now - cfg.window)
  local count = redis.call('ZCARD', K.breaker_fails)
  if state == 'half' or (state == 'closed' and count >= cfg.failures) then
    local why = count .. ' server-side failure(s) in ' .. math.floor(cfg.window / 1000) .. 's'
    if state == 'half' then why = 'the trial call failed' end
    redis.call('HSET', K.breaker, 'state', 'open', 'until', now + cfg.cooldown, 'opened', now)
    redis.call('HINCRBY', K.breaker, 'openings', 1)
    redis.call('HDEL', K.breaker, 'trial', 'trial_until')
    brk_event('open', now, why)
    state = 'open'
  end
  if state == 'open' then
    local left = (tonumber(redis.call('HGET', K.breaker, 'until')) or now) - now
    return ' [circuit breaker ' .. A.limiter .. ' open, ' .. math.ceil(left / 1000) ..
      's left of its cool-down]'
  end
  return ''
end
