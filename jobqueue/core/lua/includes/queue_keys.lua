-- The queue key table of every script that takes the full key set, in this KEYS order
-- (built by jobqueue.scripts.queue_key_list, the only place that knows it).
local K = {
  wait = KEYS[1], prio = KEYS[2], delayed = KEYS[3], active = KEYS[4], meta = KEYS[5],
  limiter = KEYS[6], limited = KEYS[7], marker = KEYS[8], events = KEYS[9],
  counter = KEYS[10], pri = KEYS[11], completed = KEYS[12], failed = KEYS[13],
  stall_lock = KEYS[14], cancels = KEYS[15],
}
