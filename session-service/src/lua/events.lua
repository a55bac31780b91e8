-- Keep a socket's outbound events for replay, atomically with the ownership check.
-- KEYS[1] events:{id}, KEYS[2] session:{id}, KEYS[3] suspended:{id}
-- ARGV[1] caller's user id, ARGV[2] most events kept, ARGV[3] time to live (s),
-- ARGV[4] the child's index TTL (s), ARGV[5] most bytes kept,
-- ARGV[6..] the events, each {"seq":N,"json":"..."}, in order
-- Returns {'missing'}, {'forbidden'} or {'ok', events kept}.
local raw = redis.call('GET', KEYS[2]) or redis.call('GET', KEYS[3])
if not raw then
  return {'missing'}
end
local s = cjson.decode(raw)
if s.user_id ~= ARGV[1] then
  return {'forbidden'}
end
index_child(s.child_id, ARGV[4], {KEYS[1]})
for i = 6, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
-- Then the oldest go until the log fits its byte budget (the newest always stays).
local kept = redis.call('LRANGE', KEYS[1], 0, -1)
local total = 0
for _, event in ipairs(kept) do
  total = total + #event
end
local budget = tonumber(ARGV[5])
local i = 1
while total > budget and i < #kept do
  total = total - #kept[i]
  redis.call('LPOP', KEYS[1])
  i = i + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'ok', redis.call('LLEN', KEYS[1])}
