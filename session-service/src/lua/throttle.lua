-- Fixed-window rate limit: one request counted against rl:{user_id}.
-- KEYS[1] rl:{user_id}
-- ARGV[1] window (s)
-- Returns {count, seconds left in the window}.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
