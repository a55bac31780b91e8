-- Token check, then a fixed-window rate limit: one request counted against rl:{user_id}.
-- KEYS[1] rl:{user_id}, KEYS[2] token_gen:{user_id}
-- ARGV[1] window (s), ARGV[2] '1' to count the request, '0' for the token check only,
-- ARGV[3] the generation the request's token carries
-- Returns {count, seconds left in the window, signed out (1 or 0)}.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) < current then
  return {0, 0, 1}
end
if ARGV[2] == '0' then
  return {0, 0, 0}
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl, 0}
