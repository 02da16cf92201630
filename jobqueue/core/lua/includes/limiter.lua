-- The buckets of a queue's shared limiter (when A.limiter ~= ''), in the limiter's hash slot
-- with the queue's own keys. Uses K.shared_limiter and A.buckets ('name=capacity/per_ms,...',
-- capacity '' = learned); lim_cost_of also K.costs, A.cost (the queue's default job cost
-- 'name=n,...') and A.base. Needs common.lua.
--
-- Bucket state in the limiter hash: c:<b> learned capacity (beats the configured one), t:<b>
-- tokens at ts:<b> (ms). Tokens refill continuously at capacity / per; a settle may leave
-- them below zero (a debt the next takes wait out).

local function parse_pairs(s)
  local out = {}
  for name, v in string.gmatch(s or '', '([%w_]+)=([^,]*)') do out[name] = v end
  return out
end

-- Every configured bucket, refilled to `now`: {name = {c = capacity or nil, w = per_ms, t}}.
local function lim_load(now)
  local raw = redis.call('HGETALL', K.shared_limiter)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  local b = {}
  for name, spec in pairs(parse_pairs(A.buckets)) do
    local cap, per = string.match(spec, '^([%d%.]*)/(%d+)$')
    local c = tonumber(h['c:' .. name]) or tonumber(cap)
    local w = tonumber(per)
    local t, ts = tonumber(h['t:' .. name]), tonumber(h['ts:' .. name])
    if c and c > 0 then
      if t == nil or ts == nil then
        t = c
      else
        local elapsed = now - ts
        if elapsed < 0 then elapsed = 0 end
        t = t + elapsed * c / w
        if t > c then t = c end
      end
      b[name] = {c = c, w = w, t = t}
    end
  end
  return b
end

local function lim_save(b, now)
  local args = {}
  for name, bk in pairs(b) do
    args[#args + 1] = 't:' .. name
    args[#args + 1] = bk.t
    args[#args + 1] = 'ts:' .. name
    args[#args + 1] = now
  end
  if #args > 0 then redis.call('HSET', K.shared_limiter, unpack(args)) end
end

-- What a job costs: what it reserved at an earlier take, its own cost given at add, or the
-- queue's default. Returns the encoded cost.
local function lim_cost_of(id)
  local reserved = redis.call('HGET', state_key(A.base, id), 'lc')
  if reserved then return reserved end
  return redis.call('HGET', K.costs, id) or A.cost
end

-- Can the buckets pay `cost` now? 'ok'; 'wait', ms until they can; or 'never', the bucket
-- whose capacity is below the cost.
local function lim_check(b, cost)
  local wait = 0
  for name, v in pairs(parse_pairs(cost)) do
    local n, bk = tonumber(v), b[name]
    if bk and n and n > 0 then
      if n > bk.c then return 'never', name end
      if bk.t < n then
        local ms = math.ceil((n - bk.t) * bk.w / bk.c)
        if ms > wait then wait = ms end
      end
    end
  end
  if wait > 0 then return 'wait', wait end
  return 'ok', 0
end

-- Add `sign` times `cost` to the buckets (-1 spends, +1 refunds).
local function lim_apply(b, cost, sign)
  for name, v in pairs(parse_pairs(cost)) do
    local n, bk = tonumber(v), b[name]
    if bk and n then
      bk.t = bk.t + sign * n
      if bk.t > bk.c then bk.t = bk.c end
    end
  end
end
