-- Prepended to every script that writes a child's keys: the per-child index that erasure reads.
-- child_keys:{child_id} is the set of every key holding the child's session, its replay log or
-- its conversation; its time to live is never shorter than that of anything it names.
local function index_child(child_id, ttl, keys)
  local index = 'child_keys:' .. child_id
  redis.call('SADD', index, unpack(keys))
  if redis.call('TTL', index) < tonumber(ttl) then
    redis.call('EXPIRE', index, ttl)
  end
end

