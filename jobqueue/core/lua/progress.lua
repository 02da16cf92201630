#!lua
--[[ progress: record a running job's progress (0..100), fenced by its lease token.
KEYS: 1 active, 2 events
ARGV: 1 base, 2 events maxlen, 3 id, 4 token, 5 progress
Returns: 0, or -2 when the lease is lost (nothing written).
]]
--@include common.lua

local base, maxlen, id = ARGV[1], ARGV[2], ARGV[3]
local skey = base .. 's:' .. id
if redis.call('HGET', skey, 'k') ~= ARGV[4] or not redis.call('ZSCORE', KEYS[1], id) then
  return -2
end
redis.call('HSET', skey, 'p', ARGV[5])
emit(KEYS[2], maxlen, 'ev', 'progress', 'id', id, 'p', ARGV[5], 'ts', now_ms())
return 0
