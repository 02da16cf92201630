-- Deduplication keys (`Queue.add(..., dedup=Dedup(key, ttl=, replace=))`). The string
-- `dd:<key>` (keys.lua dedup_key) holds '<job id> <window end ms>' (0 = no window) of the
-- job that holds the key; K.priorities holds `#<id>` -> key for that job, so that deleting it
-- releases the key (delete_job). A new job with the key is a duplicate while its holder is
-- waiting or delayed (never started, or due to run again), or until the window ends; else it
-- takes the key over. The key is released when its holder is deleted (removed, cancelled,
-- drained, cleaned, trimmed after it ended), or at the window's end if that comes later.
-- Needs keys.lua.

-- (ttl_ms, replace, key) of an add's dedup argument '<ttl_ms>:<d|r>:<key>'.
local function dd_parse(dedup)
  local ttl, mode, key = string.match(dedup, '^(%d+):([dr]):(.*)$')
  return tonumber(ttl), mode == 'r', key
end

-- (holder id, window end) of a dedup key's value.
local function dd_value(v)
  local holder, till = string.match(v, '^(.*) (%d+)$')
  return holder, tonumber(till)
end

-- The job a new one with this dedup key duplicates: (id, pending), or nil when there is none.
-- `pending`: the holder has not started (or is due to run again), so a replace may apply.
local function dd_holder(base, dedup, now)
  local _, _, key = dd_parse(dedup)
  local v = redis.call('GET', dedup_key(base, key))
  if not v then return nil end
  local holder, till = dd_value(v)
  if env_exists(base, holder)
    and not redis.call('HGET', state_key(base, holder), 's') then
    return holder, true
  end
  if till > now then return holder, false end -- started, ended or even deleted: the window
  return nil
end

-- Make `id` the holder of the dedup key, its window (if any) starting now.
local function dd_hold(base, priorities, dedup, id, now)
  local ttl, _, key = dd_parse(dedup)
  local till = 0
  if ttl > 0 then till = now + ttl end
  redis.call('SET', dedup_key(base, key), id .. ' ' .. till)
  redis.call('HSET', priorities, '#' .. id, key)
end

-- A job is deleted: the dedup key it holds goes now, or at the end of its window.
local function dd_release(base, priorities, id)
  local key = redis.call('HGET', priorities, '#' .. id)
  if not key then return end
  local dkey = dedup_key(base, key)
  local v = redis.call('GET', dkey)
  if v then
    local holder, till = dd_value(v)
    if holder == id then
      if till > 0 then
        redis.call('PEXPIREAT', dkey, till)
      else
        redis.call('DEL', dkey)
      end
    end
  end
end
