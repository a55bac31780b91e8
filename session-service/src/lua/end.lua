-- Removes the hot keys of an ended session, atomically.
-- KEYS[1] session:{id}, KEYS[2] suspended:{id}, KEYS[3] events:{id}, KEYS[4] child_session:{child_id}
-- ARGV[1] session id
-- The child's pointer is dropped only if it still points to this session.
-- Returns the number of session keys removed (0 when it was already gone).
local removed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('DEL', KEYS[3])
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
end
return removed
