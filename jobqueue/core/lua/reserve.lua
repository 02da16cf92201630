#!lua
--[[ reserve: hold more of the shared limiter for a running job's next call, once the call's
size is known (e.g. its prompt): the amount is spent from the buckets now, even into debt, so
that takes of other jobs wait behind it, and given back by the attempt's next settle. Fenced
by the attempt's lease token.
KEYS: active shared_limiter
ARGV:
  base     '<prefix>:{<queue>}:'
  id       the job
  token    the lease token of the running attempt
  cost     what to hold, 'name=n,...'
  buckets  the limiter's configured buckets, 'name=capacity/per_ms,...'
EVENTS: none
Returns: {1, wait_ms}: held; the buckets could pay it in wait_ms (0 = now); {0, bucket,
capacity} when the bucket's capacity is below the amount (nothing written); or -2 when the
lease is lost (nothing written).
]]
--@include common.lua
--@include limiter.lua

local skey = state_key(A.base, A.id)
if redis.call('HGET', skey, 'k') ~= A.token or not redis.call('ZSCORE', K.active, A.id) then
  return -2
end
local now = now_ms()
local b = lim_load(now)
local verdict, detail = lim_check(b, A.cost)
if verdict == 'never' then return {0, detail, tostring(b[detail].c)} end
lim_apply(b, A.cost, -1)
lim_save(b, now)
-- what the next settle gives back besides the take's reservation
local held = parse_pairs(redis.call('HGET', skey, 'lx'))
for name, v in pairs(parse_pairs(A.cost)) do
  held[name] = (tonumber(held[name]) or 0) + (tonumber(v) or 0)
end
local parts = {}
for name, v in pairs(held) do parts[#parts + 1] = name .. '=' .. v end
redis.call('HSET', skey, 'lx', table.concat(parts, ','))
if verdict == 'wait' then return {1, detail} end
return {1, 0}
