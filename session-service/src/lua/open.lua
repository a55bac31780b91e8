-- Create-or-discover the session of one child, atomically.
-- KEYS[1] child_session:{child_id}
-- ARGV[1] new session JSON, ARGV[2] new session id, ARGV[3] session TTL (s), ARGV[4] now (RFC 3339)
-- ARGV[5] conversation to continue ('' for a new one), ARGV[6] user id, ARGV[7] child id
-- ARGV[8] conversation TTL (s), ARGV[9] the child's index TTL (s)
-- Returns {outcome, session JSON}: outcome is created, reattached, discovered or resumed; or
-- {'no_conversation'} (missing, or another user's) or {'other_child'} for ARGV[5].
local conv_key
local conv
if ARGV[5] ~= '' then
  conv_key = 'conversation:' .. ARGV[5]
  local raw = redis.call('GET', conv_key)
  if not raw then
    return {'no_conversation'}
  end
  conv = cjson.decode(raw)
  if conv._owner_user_id ~= ARGV[6] then
    return {'no_conversation'}
  end
  if conv.child_id ~= ARGV[7] then
    return {'other_child'}
  end
end
local sid = redis.call('GET', KEYS[1])
if sid then
  local active = redis.call('GET', 'session:' .. sid)
  if active then
    return {'discovered', active}
  end
  local suspended = redis.call('GET', 'suspended:' .. sid)
  if suspended then
    local s = cjson.decode(suspended)
    if s.user_id ~= ARGV[6] then
      -- Another member's session: reported, never revived by someone else.
      return {'discovered', suspended}
    end
    s.state = 'active'
    s.last_activity_at = ARGV[4]
    local encoded = cjson.encode(s)
    redis.call('SET', 'session:' .. sid, encoded, 'EX', ARGV[3])
    redis.call('DEL', 'suspended:' .. sid)
    redis.call('SET', KEYS[1], sid, 'EX', ARGV[3])
    return {'resumed', encoded}
  end
end
local fresh = ARGV[1]
local outcome = 'created'
if conv then
  local s = cjson.decode(fresh)
  s.conversation_id = ARGV[5]
  fresh = cjson.encode(s)
  conv.session_id = ARGV[2]
  conv.last_activity_at = ARGV[4]
  outcome = 'reattached'
else
  local s = cjson.decode(fresh)
  conv_key = 'conversation:' .. s.conversation_id
  conv = {
    conversation_id = s.conversation_id,
    _owner_user_id = ARGV[6],
    child_id = ARGV[7],
    session_id = ARGV[2],
    created_at = ARGV[4],
    last_activity_at = ARGV[4],
    turns = {},
  }
end
redis.call('SET', conv_key, cjson.encode(conv), 'EX', ARGV[8])
index_child(ARGV[7], ARGV[9], {conv_key, 'session:' .. ARGV[2], 'suspended:' .. ARGV[2], 'events:' .. ARGV[2]})
redis.call('SET', 'session:' .. ARGV[2], fresh, 'EX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return {outcome, fresh}
