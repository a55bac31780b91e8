-- Store the response of a claimed idempotency key, or release the claim.
-- KEYS[1] idempotency:{user_id}:{key}
-- ARGV[1] fingerprint, ARGV[2] 'store' or 'release', ARGV[3] status, ARGV[4] body, ARGV[5] TTL (s)
-- Only the request that claimed the key (same fingerprint, still pending) may complete it.
-- Returns 1 when done, 0 when the claim was not ours (expired and taken, or already done).
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local stored = cjson.decode(raw)
if stored.fingerprint ~= ARGV[1] or stored.state ~= 'pending' then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
local done = cjson.encode({state = 'done', fingerprint = ARGV[1], status = tonumber(ARGV[3]), body = ARGV[4]})
redis.call('SET', KEYS[1], done, 'EX', ARGV[5])
return 1
