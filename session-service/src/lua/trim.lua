-- Cut Blob's answer in one exchange to what the child heard, atomically.
-- KEYS[1] session:{id}, KEYS[2] suspended:{id}
-- ARGV[1] caller's user id, ARGV[2] request id of the exchange, ARGV[3] the answer as heard,
-- ARGV[4] conversation TTL (s), ARGV[5] the child's index TTL (s)
-- Only shortens: the new text must be a prefix of the stored one.
-- Returns {'missing'}, {'forbidden'}, {'no_turn'} or {'ok', turn count}.
local raw = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])
if not raw then
  return {'missing'}
end
local s = cjson.decode(raw)
if s.user_id ~= ARGV[1] then
  return {'forbidden'}
end
local conv_key = 'conversation:' .. s.conversation_id
local conv_raw = redis.call('GET', conv_key)
if not conv_raw then
  return {'no_turn'}
end
local conv = cjson.decode(conv_raw)
if type(conv.turns) ~= 'table' then
  return {'no_turn'}
end
for i = #conv.turns, 1, -1 do
  local turn = conv.turns[i]
  if turn.request_id == ARGV[2] then
    local heard = ARGV[3]
    if string.sub(turn.assistant_text, 1, #heard) == heard then
      turn.assistant_text = heard
      turn.interrupted = true
      redis.call('SET', conv_key, cjson.encode(conv), 'EX', ARGV[4])
      index_child(s.child_id, ARGV[5], {conv_key})
    end
    return {'ok', #conv.turns}
  end
end
return {'no_turn'}
