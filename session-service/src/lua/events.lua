-- Keep a socket's outbound events for replay, atomically with the ownership check.
-- KEYS[1] events:{id}, KEYS[2] session:{id}, KEYS[3] suspended:{id}
-- ARGV[1] caller's user id, ARGV[2] most events kept, ARGV[3] time to live (s),
-- ARGV[4..] the events, each {"seq":N,"json":"..."}, in order
-- Returns {'missing'}, {'forbidden'} or {'ok', events kept}.
local raw = redis.call('GET', KEYS[2]) or redis.call('GET', KEYS[3])
if not raw then
  return {'missing'}
end
if cjson.decode(raw).user_id ~= ARGV[1] then
  return {'forbidden'}
end
for i = 4, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'ok', redis.call('LLEN', KEYS[1])}
