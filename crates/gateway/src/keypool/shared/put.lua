-- llmux_put v1: record a key-pool fact for instances that start later, and tell the running
-- ones. A fact never shortens a longer one already recorded unless ARGV[3] is 'set'.
-- KEYS[1]: the record. ARGV: value, ttl (ms), 'max' | 'set', channel, message.
local ttl = tonumber(ARGV[2])
if ARGV[3] == 'set' or redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
