-- Create-or-discover the session of one child, atomically.
-- KEYS[1] child_session:{child_id}
-- ARGV[1] new session JSON, ARGV[2] new session id, ARGV[3] session TTL (s), ARGV[4] now (RFC 3339)
-- Returns {outcome, session JSON}: outcome is created, discovered or resumed.
local sid = redis.call('GET', KEYS[1])
if sid then
  local active = redis.call('GET', 'session:' .. sid)
  if active then
    return {'discovered', active}
  end
  local suspended = redis.call('GET', 'suspended:' .. sid)
  if suspended then
    local s = cjson.decode(suspended)
    s.state = 'active'
    s.last_activity_at = ARGV[4]
    local encoded = cjson.encode(s)
    redis.call('SET', 'session:' .. sid, encoded, 'EX', ARGV[3])
    redis.call('DEL', 'suspended:' .. sid)
    redis.call('SET', KEYS[1], sid, 'EX', ARGV[3])
    return {'resumed', encoded}
  end
end
redis.call('SET', 'session:' .. ARGV[2], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return {'created', ARGV[1]}
