-- One state transition of a session, atomically.
-- KEYS[1] session:{id}, KEYS[2] suspended:{id}
-- ARGV[1] operation: attach | resume | suspend | pause | unpause
-- ARGV[2] caller's user id ('' skips the owner check), ARGV[3] now (RFC 3339)
-- ARGV[4] session TTL (s), ARGV[5] reconnect window (s)
-- ARGV[6] for suspend: the socket's epoch ('0' = unconditional), ARGV[7] the child's index TTL (s)
-- Returns {'missing'}, {'forbidden'}, {'stale', session JSON} (suspend by a socket a newer one
-- has replaced) or {state before ('active'|'suspended'), session JSON after}.
-- Pause, unpause and attach are announced on session_signals:{id} for the sockets watching.
local op = ARGV[1]
local raw = redis.call('GET', KEYS[1])
local before = 'active'
if not raw then
  raw = redis.call('GET', KEYS[2])
  before = 'suspended'
  if not raw then
    return {'missing'}
  end
end
local s = cjson.decode(raw)
if ARGV[2] ~= '' and s.user_id ~= ARGV[2] then
  return {'forbidden'}
end
local child_key = 'child_session:' .. s.child_id
local points_here = redis.call('GET', child_key) == s.session_id
s.last_activity_at = ARGV[3]

local signals = 'session_signals:' .. s.session_id
index_child(s.child_id, ARGV[7], {KEYS[1], KEYS[2]})

if op == 'suspend' then
  if before == 'suspended' then
    return {before, raw}
  end
  if ARGV[6] ~= '0' and tonumber(s.connection_count) ~= tonumber(ARGV[6]) then
    return {'stale', raw}
  end
  s.state = 'suspended'
  local encoded = cjson.encode(s)
  redis.call('SET', KEYS[2], encoded, 'EX', ARGV[5])
  redis.call('DEL', KEYS[1])
  if points_here then
    redis.call('EXPIRE', child_key, ARGV[5])
  end
  return {before, encoded}
end

if op == 'attach' then
  s.connection_count = (tonumber(s.connection_count) or 0) + 1
elseif op == 'pause' then
  s.paused = true
elseif op == 'unpause' then
  s.paused = false
elseif op ~= 'resume' then
  return redis.error_reply('unknown operation ' .. op)
end

local ttl = ARGV[4]
local key = KEYS[1]
if before == 'suspended' and (op == 'pause' or op == 'unpause') then
  -- Pausing a suspended session keeps it suspended; only a socket or resume revives it.
  ttl = ARGV[5]
  key = KEYS[2]
else
  s.state = 'active'
  redis.call('DEL', KEYS[2])
  if points_here or redis.call('EXISTS', child_key) == 0 then
    redis.call('SET', child_key, s.session_id, 'EX', ttl)
  end
end
local encoded = cjson.encode(s)
redis.call('SET', key, encoded, 'EX', ttl)
if op == 'attach' then
  redis.call('PUBLISH', signals, cjson.encode({kind = 'attached', epoch = s.connection_count}))
elseif op == 'pause' then
  redis.call('PUBLISH', signals, cjson.encode({kind = 'paused', epoch = 0}))
elseif op == 'unpause' then
  redis.call('PUBLISH', signals, cjson.encode({kind = 'resumed', epoch = 0}))
end
return {before, encoded}
