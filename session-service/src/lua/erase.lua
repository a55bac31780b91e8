-- Erase every hot key of a child, atomically: whatever the child's index names (live,
-- suspended and expired sessions' keys, replay logs, conversations), plus ARGV's keys (found
-- elsewhere, e.g. through archived sessions), the index itself and the child's pointer.
-- KEYS[1] child_keys:{child_id}, KEYS[2] child_session:{child_id}
-- ARGV[1..] more key names
-- Returns {conversations, sessions, event logs} that existed and were deleted.
local names = redis.call('SMEMBERS', KEYS[1])
for i = 1, #ARGV do
  table.insert(names, ARGV[i])
end
local seen = {}
local sessions = {}
local conversations, events = 0, 0
for _, key in ipairs(names) do
  if not seen[key] then
    seen[key] = true
    if redis.call('DEL', key) == 1 then
      local kind, id = string.match(key, '^(%a+):(.+)$')
      if kind == 'conversation' then
        conversations = conversations + 1
      elseif kind == 'events' then
        events = events + 1
      elseif kind == 'session' or kind == 'suspended' then
        sessions[id] = true
      end
    end
  end
end
local session_count = 0
for _ in pairs(sessions) do
  session_count = session_count + 1
end
redis.call('DEL', KEYS[1], KEYS[2])
return {conversations, session_count, events}
