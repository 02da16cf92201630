#!lua
--[[ learn: what the provider says of one bucket of a shared limiter (e.g. from its rate-limit
headers): its capacity becomes `limit`, and its tokens never more than `remaining` (the
provider counts calls we have not settled yet; we only ever lower our count towards its).
KEYS: shared_limiter
ARGV:
  bucket     the bucket's name
  limit      its capacity ('' = unchanged)
  remaining  what is left of it now ('' = unknown)
  buckets    the limiter's configured buckets, 'name=capacity/per_ms,...'
EVENTS: none
Returns: {capacity, tokens} of the bucket after the update (as strings).
]]
--@include common.lua
--@include limiter.lua

local now = now_ms()
if A.limit ~= '' then redis.call('HSET', K.shared_limiter, 'c:' .. A.bucket, A.limit) end
local b = lim_load(now)
local bk = b[A.bucket]
if not bk then return {'', ''} end
local remaining = tonumber(A.remaining)
if remaining and remaining < bk.t then bk.t = remaining end
lim_save(b, now)
return {tostring(bk.c), tostring(bk.t)}
