-- Append turns to a session's conversation and refresh the session's time to live, atomically.
-- KEYS[1] session:{id}, KEYS[2] suspended:{id}
-- ARGV[1] caller's user id, ARGV[2] JSON list of turns, ARGV[3] now (RFC 3339)
-- ARGV[4] session TTL (s), ARGV[5] conversation TTL (s)
-- ARGV[6] JSON list of the child's pauses to keep with the conversation, or '' to leave them
-- ARGV[7] the child's index TTL (s), ARGV[8] most turns kept, ARGV[9] most bytes kept
-- The oldest turns are dropped to keep within both (the newest turn always stays).
-- Returns {'missing'}, {'forbidden'} or {'ok', turn count}.
local raw = redis.call('GET', KEYS[1])
local live = true
if not raw then
  raw = redis.call('GET', KEYS[2])
  live = false
  if not raw then
    return {'missing'}
  end
end
local s = cjson.decode(raw)
if s.user_id ~= ARGV[1] then
  return {'forbidden'}
end
local conv_key = 'conversation:' .. s.conversation_id
local conv_raw = redis.call('GET', conv_key)
local conv
if conv_raw then
  conv = cjson.decode(conv_raw)
  if conv._owner_user_id ~= s.user_id then
    return {'forbidden'}
  end
else
  conv = {
    conversation_id = s.conversation_id,
    _owner_user_id = s.user_id,
    child_id = s.child_id,
    created_at = s.created_at,
    turns = {},
  }
end
conv.session_id = s.session_id
conv.last_activity_at = ARGV[3]
if type(conv.turns) ~= 'table' then
  conv.turns = {}
end
for _, turn in ipairs(cjson.decode(ARGV[2])) do
  table.insert(conv.turns, turn)
end
if ARGV[6] ~= '' then
  conv.pauses_ms = cjson.decode(ARGV[6])
end
while #conv.turns > tonumber(ARGV[8]) do
  table.remove(conv.turns, 1)
end
local encoded = cjson.encode(conv)
while #encoded > tonumber(ARGV[9]) and #conv.turns > 1 do
  table.remove(conv.turns, 1)
  encoded = cjson.encode(conv)
end
redis.call('SET', conv_key, encoded, 'EX', ARGV[5])
index_child(s.child_id, ARGV[7], {conv_key, KEYS[1], KEYS[2], 'events:' .. s.session_id})
if live then
  s.last_activity_at = ARGV[3]
  redis.call('SET', KEYS[1], cjson.encode(s), 'EX', ARGV[4])
  redis.call('EXPIRE', 'child_session:' .. s.child_id, ARGV[4], 'GT')
end
return {'ok', #conv.turns}
