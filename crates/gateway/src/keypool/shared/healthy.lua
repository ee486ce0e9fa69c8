-- llmux_healthy v1: a key answered again; forget what kept it out and tell the instances.
-- KEYS: the key's records to delete. ARGV: channel, message.
for _, key in ipairs(KEYS) do
  redis.call('DEL', key)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
