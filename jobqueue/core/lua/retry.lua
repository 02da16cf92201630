#!lua
--[[ retry: move failed jobs back to waiting, attempts reset to 0 (the last error is kept).
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 most jobs when no ids are given, 4 only jobs failed at or
      before this time in ms (-1 = any), 5 count m of ids, then m ids
Returns: {retried, code1, ..., codem}: per given id 1 (retried, event `retrying`), -1 (no such
job) or -6 (not failed). With m = 0 the oldest failed jobs are retried and the reply is
{retried, examined}: examined < ARGV 3 means no more jobs are left to retry.
]]
--@include common.lua
--@include queue_keys.lua

local base, maxlen = ARGV[1], ARGV[2]
local now = now_ms()
local m = tonumber(ARGV[5])
local out = {0}

local function retry_one(id)
  local skey = base .. 's:' .. id
  redis.call('ZREM', K.failed, id)
  -- 'n' (starts) is kept: lease tokens stay unique across the job's whole life
  redis.call('HSET', skey, 'a', 0)
  redis.call('HDEL', skey, 's', 'tf', 'r', 'st', 'rl', 'p', 'k')
  push_ready(K.wait, K.prio, K.pri, K.counter, id, false)
  emit(K.events, maxlen, 'ev', 'retrying', 'id', id, 'st', 'waiting', 'manual', '1', 'ts', now)
  out[1] = out[1] + 1
end

if m > 0 then
  for i = 6, 5 + m do
    local id = ARGV[i]
    if redis.call('EXISTS', base .. 'j:' .. id) == 0 then
      out[#out + 1] = -1
    elseif not redis.call('ZSCORE', K.failed, id) then
      out[#out + 1] = -6
    else
      retry_one(id)
      out[#out + 1] = 1
    end
  end
else
  local upto = '+inf'
  if tonumber(ARGV[4]) >= 0 then upto = ARGV[4] end
  local ids = redis.call('ZRANGEBYSCORE', K.failed, '-inf', upto, 'LIMIT', 0, tonumber(ARGV[3]))
  out[2] = #ids
  for i = 1, #ids do
    if redis.call('EXISTS', base .. 'j:' .. ids[i]) == 1 then
      retry_one(ids[i])
    else
      redis.call('ZREM', K.failed, ids[i])
    end
  end
end
if out[1] > 0 then poke(K.marker) end
return out
