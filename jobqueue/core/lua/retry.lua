#!lua
--[[ retry: move failed jobs back to waiting, attempts reset to 0 (the last error is kept).
KEYS: failed wait prio priorities id_counter marker events groups jobs
ARGV:
  base      '<prefix>:{<queue>}:'
  maxlen    cap of the event stream
  batch     most jobs retried when no ids are given
  upto_ms   with no ids: only jobs failed at or before this time (-1 = any)
  m         how many ids follow (0 = the oldest failed jobs)
  per id:
  id        a job to retry
EVENTS: retrying
Returns: {retried, code1, ..., codem}: per given id 1 (retried, event `retrying`), -1 (no such
job) or -6 (not failed). With m = 0 the oldest failed jobs are retried and the reply is
{retried, examined}: examined < batch means no more jobs are left to retry.
]]
--@include common.lua

local now = now_ms()
local m = tonumber(A.m)
local out = {0}

local function retry_one(id)
  local skey = state_key(A.base, id)
  redis.call('ZREM', K.failed, id)
  -- 'n' (starts) is kept: lease tokens stay unique across the job's whole life
  redis.call('HSET', skey, 'a', 0)
  -- 'ws' (steps of a job that waited for children) is kept: it goes on from its phase; 'cx'
  -- (a child failed while it ran) is forgotten with its failure
  redis.call('HDEL', skey, 's', 'tf', 'r', 'st', 'rl', 'p', 'k', 'bw', 'cx')
  push_ready(K, id, false)
  emit(K.events, A.maxlen, 'ev', 'retrying', 'id', id, 'st', 'waiting', 'manual', '1',
    'ts', now)
  out[1] = out[1] + 1
end

if m > 0 then
  for i = 0, m - 1 do
    local id = argv_group(i)
    if not env_exists(A.base, id) then
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
  if tonumber(A.upto_ms) >= 0 then upto = A.upto_ms end
  local ids = redis.call('ZRANGEBYSCORE', K.failed, '-inf', upto, 'LIMIT', 0, tonumber(A.batch))
  out[2] = #ids
  for i = 1, #ids do
    if env_exists(A.base, ids[i]) then
      retry_one(ids[i])
    else
      redis.call('ZREM', K.failed, ids[i])
    end
  end
end
if out[1] > 0 then poke(K.marker) end
return out
