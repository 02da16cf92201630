#!lua
--[[ promote: make a delayed job ready to run now (an operator's "run it now").
KEYS: delayed wait prio priorities id_counter marker events groups jobs
ARGV:
  base    '<prefix>:{<queue>}:'
  maxlen  cap of the event stream
  id      the job
EVENTS: waiting
Returns: 1 (promoted, event `waiting` with prev `delayed`), -1 (no such job) or -9 (the job is
not delayed).
]]
--@include common.lua

local id = A.id
if not env_exists(A.base, id) then return -1 end
-- ZREM is the test: a job that is not in `delayed` (due and promoted by a take meanwhile, or
-- in any other state) is left as it is
if redis.call('ZREM', K.delayed, id) == 0 then return -9 end
push_ready(K, id, false)
poke(K.marker)
emit(K.events, A.maxlen, 'ev', 'waiting', 'id', id, 'prev', 'delayed', 'promoted', '1',
  'ts', now_ms())
return 1
