#!lua
--[[ finish: record a batch of attempt outcomes, then take jobs for the freed slots.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 n to take, 4 worker id, 5 lease ms, 6 concurrency,
      7 rate max, 8 rate period ms, 9 keep completed count (-1 = all), 10 keep completed
      age ms (-1 = forever), 11 keep failed count, 12 keep failed age ms, 13 outcome count m,
      then per outcome 7 values: id, token, kind, payload, error type, delay ms, limit
  kind 'c' completed: payload = result JSON
  kind 'f' failed attempt: payload = error message; delay ms < 0 = not retryable;
           limit = max attempts (total)
  kind 'r' rate limited: the job is deferred by delay ms without spending an attempt and
           no job of the queue starts until then; limit = max deferrals
  kind 'd' deferred: like 'r' for this job only (the queue is not held)
  kind 'h' handed back (worker shutdown): back to the front of the queue at once
Returns: {codes, take_reply}: codes[i] is 1 (recorded, the job finished), 2 (recorded, it
will run again), or -2 (lease lost: refused, nothing written for it).
]]
--@include common.lua
--@include queue_keys.lua
--@include take.lua

local base, maxlen = ARGV[1], ARGV[2]
local now = now_ms()
local any_cancels = redis.call('HLEN', K.cancels) > 0
local m = tonumber(ARGV[13])
local codes = {}
local done_ok, done_failed = false, false

local function fail_final(id, skey, made, etype, msg)
  redis.call('HSET', skey, 's', 'failed', 'em', msg, 'et', etype, 'tf', now, 'a', made)
  redis.call('ZADD', K.failed, now, id)
  emit(K.events, maxlen, 'ev', 'failed', 'id', id, 'a', made, 'et', etype, 'em', msg, 'ts', now)
  done_failed = true
end

local function retry_later(id, skey, made, etype, msg, delay)
  redis.call('HSET', skey, 'em', msg, 'et', etype, 'a', made)
  redis.call('HDEL', skey, 's')
  local seq = redis.call('INCR', K.counter)
  redis.call('ZADD', K.delayed, delayed_score(now + delay, seq), id)
  emit(K.events, maxlen, 'ev', 'retrying', 'id', id, 'a', made, 'et', etype, 'em', msg,
    'st', 'delayed', 'delay', delay, 'ts', now)
end

for i = 0, m - 1 do
  local o = 14 + i * 7
  local id, token, kind, payload = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local etype, delay, limit = ARGV[o + 4], tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  local skey = base .. 's:' .. id
  local st = redis.call('HMGET', skey, 'k', 'a', 'rl')
  -- fencing: only the holder of the current token may finish, and only an active job
  -- (ZREM runs only for the holder; its count says whether the job was still active)
  if st[1] ~= token or redis.call('ZREM', K.active, id) == 0 then
    codes[#codes + 1] = -2
  else
    if any_cancels then redis.call('HDEL', K.cancels, id) end
    local made = tonumber(st[2] or '0')
    if kind == 'c' then
      made = made + 1
      -- the emptied token fences this attempt off like a deleted one, in the same command
      redis.call('HSET', skey, 's', 'completed', 'r', payload, 'tf', now, 'a', made, 'k', '')
      redis.call('ZADD', K.completed, now, id)
      emit(K.events, maxlen, 'ev', 'completed', 'id', id, 'a', made, 'ts', now)
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
        -- a rate limit belongs to the API key, not the job: hold the whole queue
        if kind == 'r' and delay > 0 and redis.call('PTTL', K.limited) < delay then
          redis.call('SET', K.limited, '1', 'PX', delay)
        end
        codes[#codes + 1] = 2
      end
    else -- 'h'
      redis.call('HDEL', skey, 's', 'k')
      push_ready(K.wait, K.prio, K.pri, K.counter, id, true)
      emit(K.events, maxlen, 'ev', 'returned', 'id', id, 'ts', now)
      codes[#codes + 1] = 2
    end
  end
end

if done_ok then trim_finished(base, K.pri, K.completed, ARGV[9], ARGV[10], now) end
if done_failed then trim_finished(base, K.pri, K.failed, ARGV[11], ARGV[12], now) end

local reply = take(K, base, maxlen, ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
  ARGV[8], now)
if tonumber(ARGV[3]) == 0 and m > 0 and ready_count(K) > 0 then
  -- this worker is full but slots were freed: let another worker use them
  local c = tonumber(ARGV[6])
  if c <= 0 or redis.call('ZCARD', K.active) < c then poke(K.marker) end
end
return {codes, reply}
