#!lua
--[[ settle: charge a running job's real usage to its queue's shared limiter. The first settle
of an attempt refunds what the take reserved (the job's estimated cost) and charges the usage;
later ones (a job making several calls) charge their usage. Every settle also refunds what
`reserve` held since the last one. Buckets may go below zero: a debt the next takes wait out.
Fenced by the attempt's lease token.
KEYS: active shared_limiter
ARGV:
  base     '<prefix>:{<queue>}:'
  id       the job
  token    the lease token of the running attempt
  usage    what the call used, 'name=n,...'
  buckets  the limiter's configured buckets, 'name=capacity/per_ms,...'
EVENTS: none
Returns: 1 settled, or -2 when the lease is lost (nothing written).
]]
--@include common.lua
--@include limiter.lua

local skey = state_key(A.base, A.id)
local st = redis.call('HMGET', skey, 'k', 'lc', 'ls', 'lx')
if st[1] ~= A.token or not redis.call('ZSCORE', K.active, A.id) then return -2 end
local now = now_ms()
local b = lim_load(now)
if st[2] and not st[3] then
  lim_apply(b, st[2], 1)
  redis.call('HSET', skey, 'ls', '1')
end
if st[4] then
  lim_apply(b, st[4], 1)
  redis.call('HDEL', skey, 'lx')
end
lim_apply(b, A.usage, -1)
lim_save(b, now)
return 1
