#!lua flags=allow-oom
--[[ take: move up to n ready jobs to active, each with a lease and a fencing token (see
includes/take.lua; workers use `finish`, which reports outcomes and takes in one call).
KEYS: wait prio priorities delayed active meta limiter limited marker events id_counter
  failed groups shared_limiter shared_hold breaker breaker_fails costs jobs
ARGV:
  base         '<prefix>:{<queue>}:'
  maxlen       cap of the event stream
  take         most jobs to take
  worker       the worker's id (the token's prefix)
  lease_ms     lease of each job taken
  concurrency  cap on active jobs across all workers (0 = none)
  rate_max     job starts per rate period (0 = no rate limit)
  rate_per_ms  the rate period
  limiter      the shared limiter's name ('' = none)
  buckets      its configured buckets, 'name=capacity/per_ms,...'
  cost         the queue's default job cost, 'name=n,...'
  breaker      its breaker, 'failures/window_ms/cooldown_ms/max_wait_ms' ('' = none)
EVENTS: active failed breaker waiting
Returns: {wait_hint_ms, id, envelope, token, attempt, step, ...} (see includes/take.lua)
]]
--@include common.lua
--@include limiter.lua
--@include breaker.lua
--@include take.lua

return take(A.take, now_ms())
