-- Claim an idempotency key, or read what its first use stored.
-- KEYS[1] idempotency:{user_id}:{key}
-- ARGV[1] fingerprint (owner and request digest), ARGV[2] claim TTL (s)
-- Returns {'claimed'}, {'in_progress'}, {'mismatch'} or {'replay', status, body}.
local raw = redis.call('GET', KEYS[1])
if not raw then
  local claim = cjson.encode({state = 'pending', fingerprint = ARGV[1]})
  redis.call('SET', KEYS[1], claim, 'EX', ARGV[2])
  return {'claimed'}
end
local stored = cjson.decode(raw)
if stored.fingerprint ~= ARGV[1] then
  return {'mismatch'}
end
if stored.state == 'pending' then
  return {'in_progress'}
end
return {'replay', tostring(stored.status), stored.body}
