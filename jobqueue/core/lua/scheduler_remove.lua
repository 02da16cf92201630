#!lua
--[[ scheduler_remove: delete a scheduler (jobs it already added stay).
KEYS: schedulers scheduler(id)
ARGV:
  id        the scheduler id
EVENTS: none
Returns: 1 when it existed, else 0.
]]

local existed = redis.call('DEL', K.scheduler)
redis.call('ZREM', K.schedulers, A.id)
return existed
