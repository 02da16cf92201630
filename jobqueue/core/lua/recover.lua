#!lua flags=allow-oom
--[[ recover: the stall check. Jobs whose lease expired (their worker died or hung) go back to
the front of the queue, or to failed once they stalled more than max_stalls times (or were
asked to cancel). One worker runs it per interval: the stall lock is taken with SET NX PX.
KEYS: stall_lock active wait prio priorities id_counter failed cancels marker events groups
  jobs
ARGV:
  base            '<prefix>:{<queue>}:'
  maxlen          cap of the event stream
  max_stalls      times a job may lose its lease before it fails
  lock_ms         how long the stall lock is held
  batch           most jobs examined
  owner           the worker taking the lock
  keep_failed     failed jobs kept (-1 = all)
  keep_failed_ms  age of the oldest failed job kept (-1 = forever)
EVENTS: stalled failed waiting
Returns: {1, requeued_ids, failed_ids}, or {0} when another worker holds the stall lock.
]]
--@include common.lua
--@include flows.lua

if not redis.call('SET', K.stall_lock, A.owner, 'NX', 'PX', A.lock_ms) then
  return {0}
end
local max_stalls = tonumber(A.max_stalls)
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, tonumber(A.batch))
local requeued, failed = {}, {}
for i = 1, #expired do
  local id = expired[i]
  local skey = state_key(A.base, id)
  redis.call('ZREM', K.active, id)
  local group = redis.call('HGET', skey, 'g')
  if group then grp_left(group) end
  redis.call('HDEL', skey, 'k')
  local stalls = redis.call('HINCRBY', skey, 'st', 1)
  local reason = redis.call('HGET', K.cancels, id)
  if stalls > max_stalls or reason then
    local msg = 'job stalled more than the allowed ' .. max_stalls .. ' time(s)'
    local etype = 'STALLED'
    if reason then
      msg = reason
      etype = 'CANCELLED'
      redis.call('HDEL', K.cancels, id)
    end
    redis.call('HSET', skey, 's', 'failed', 'em', msg, 'et', etype, 'tf', now)
    redis.call('ZADD', K.failed, now, id)
    emit(K.events, A.maxlen, 'ev', 'stalled', 'id', id, 'st', 'failed', 'et', etype, 'em', msg,
      'ts', now)
    flow_child_ended(A.base, id, false, '', etype, msg, now)
    failed[#failed + 1] = id
  else
    redis.call('HDEL', skey, 's')
    push_ready(K, id, true)
    emit(K.events, A.maxlen, 'ev', 'stalled', 'id', id, 'st', 'waiting', 'ts', now)
    requeued[#requeued + 1] = id
  end
end
if #requeued > 0 then poke(K.marker) end
if #failed > 0 then
  trim_finished(A.base, K.priorities, K.failed, A.keep_failed, A.keep_failed_ms, now)
end
return {1, requeued, failed}
