#!lua
--[[ add: store new jobs and make them ready (or delayed), deduplicating by job id.
KEYS: 1 id counter, 2 wait, 3 prio, 4 delayed, 5 marker, 6 events, 7 pri
ARGV: 1 base ('<prefix>:{<queue>}:'), 2 events maxlen, 3 job count n,
      then per job 5 values: id ('' = next counter value), name, envelope JSON object,
      delay ms, priority
Returns: flat array {id1, created1, id2, created2, ...}; created is 1, or 0 when a job with
that id already existed (nothing was written for it).
]]
--@include common.lua

local base, maxlen, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
local poked = false
for i = 0, n - 1 do
  local o = 4 + i * 5
  local id, name, env = ARGV[o], ARGV[o + 1], ARGV[o + 2]
  local delay, priority = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  local seq = redis.call('INCR', KEYS[1])
  if id == '' then id = tostring(seq) end
  local jkey = base .. 'j:' .. id
  if redis.call('EXISTS', jkey) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 0
  else
    -- the creation time is the server's, appended to the client's JSON object
    redis.call('SET', jkey, string.sub(env, 1, -2) .. ',"ts":' .. now .. '}')
    if priority ~= 0 then redis.call('HSET', KEYS[7], id, priority) end
    local st = 'waiting'
    if delay > 0 then
      st = 'delayed'
      redis.call('ZADD', KEYS[4], delayed_score(now + delay, seq), id)
    elseif priority == 0 then
      redis.call('RPUSH', KEYS[2], id)
    else
      redis.call('ZADD', KEYS[3], prio_score(priority, seq), id)
    end
    emit(KEYS[6], maxlen, 'ev', 'added', 'id', id, 'name', name, 'st', st, 'ts', now)
    poked = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if poked then poke(KEYS[5]) end
return out
