#!lua
--[[ take: move up to n ready jobs to active, each with a lease and a fencing token.
KEYS: the full queue key set (includes/queue_keys.lua)
ARGV: 1 base, 2 events maxlen, 3 n, 4 worker id (token prefix), 5 lease ms,
      6 global concurrency (0 = no cap), 7 rate max (0 = no limit), 8 rate period ms
Returns: {wait_hint_ms, id, envelope, token, attempt, ...} (see includes/take.lua)
]]
--@include common.lua
--@include queue_keys.lua
--@include take.lua

return take(K, ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
  ARGV[8], now_ms())
