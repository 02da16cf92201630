#!lua
--[[ recover: the stall check. Jobs whose lease expired (their worker died or hung) go back to
the queue, or to failed once they stalled more than max_stalls times. One worker runs it per
interval: the stall lock is taken with SET NX PX.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 max stalls, 4 lock ms, 5 batch limit, 6 lock owner,
      7 keep failed count, 8 keep failed age ms
Returns: {requeued, failed}, or {-1} when another worker holds the stall lock.
]]
--@include common.lua
--@include queue_keys.lua

local base, maxlen, max_stalls = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call('SET', K.stall_lock, ARGV[6], 'NX', 'PX', ARGV[4]) then
  return {-1}
end
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local requeued, failed = 0, 0
for i = 1, #expired do
  local id = expired[i]
  local skey = base .. 's:' .. id
  redis.call('ZREM', K.active, id)
  redis.call('HDEL', skey, 'k')
  local stalls = redis.call('HINCRBY', skey, 'st', 1)
  if stalls > max_stalls or redis.call('HEXISTS', K.cancels, id) == 1 then
    local msg = 'job stalled more than the allowed ' .. max_stalls .. ' time(s)'
    local etype = 'STALLED'
    local reason = redis.call('HGET', K.cancels, id)
    if reason then
      msg = reason
      etype = 'CANCELLED'
      redis.call('HDEL', K.cancels, id)
    end
    redis.call('HSET', skey, 's', 'failed', 'em', msg, 'et', etype, 'tf', now)
    redis.call('ZADD', K.failed, now, id)
    emit(K.events, maxlen, 'ev', 'stalled', 'id', id, 'st', 'failed', 'et', etype, 'em', msg,
      'ts', now)
    failed = failed + 1
  else
    redis.call('HDEL', skey, 's')
    push_ready(K.wait, K.prio, K.pri, K.counter, id, true)
    emit(K.events, maxlen, 'ev', 'stalled', 'id', id, 'st', 'waiting', 'ts', now)
    requeued = requeued + 1
  end
end
if requeued > 0 then poke(K.marker) end
if failed > 0 then trim_finished(base, K.pri, K.failed, ARGV[7], ARGV[8], now) end
return {requeued, failed}
