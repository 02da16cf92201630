#!lua
--[[ add_plain: store one new job that has only a name and data (`Queue.add` without options,
most adds) at the end of the FIFO list: what add.lua does for such a job, without the loops,
branches and helpers of the options it does not have (given ids, delays, priorities, costs,
groups, dedup keys), with which add.lua spends half as much Redis time again on it, run cold.
KEYS: id_counter wait marker events jobs
ARGV:
  base      '<prefix>:{<queue>}:', the start of every key of the queue
  maxlen    cap of the event stream (0 = no events)
  name      the job name, for the event
  envelope  the job's JSON object; the server's creation time is appended to it
EVENTS: added
Returns: {id, code}: code 1 (created), or 0 when a job of the id the counter gave exists
already (a key written by hand): nothing was written for it.
]]
--@include common.lua

local now = now_ms()
local id = tostring(redis.call('INCR', K.id_counter))
local body = string.sub(A.envelope, 1, -2) .. ',"ts":' .. now .. '}'
if not env_set_nx(A.base, id, body) then return {id, 0} end
redis.call('RPUSH', K.wait, id)
emit(K.events, A.maxlen, 'ev', 'added', 'id', id, 'name', A.name, 'st', 'waiting', 'ts', now)
poke(K.marker)
return {id, 1}
