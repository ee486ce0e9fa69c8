-- llmux_admit v1: admit one request against every configured bucket of one key x model, all
-- or nothing. GCRA on Redis server time, so the instances' clocks do not matter.
-- KEYS[i]: bucket i, holding its TAT (when it is full again, microseconds since the epoch).
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]: capacity, period (microseconds), cost of bucket i.
-- Returns {1, 0, 0} when admitted (every bucket charged), or {0, wait_us, i}: the bucket that
-- refuses and how long until the request would fit (nothing charged).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local worst, worst_i = 0, 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = now
  local v = redis.call('GET', key)
  if v then
    tat = math.max(tonumber(v) or now, now)
  end
  -- A cost above capacity waits for a full bucket, not forever; it is charged in full (debt).
  local wait = tat + math.ceil(math.min(cost, cap) * period / cap) - now - period
  if wait > worst then
    worst, worst_i = wait, i
  end
  tats[i] = tat + math.ceil(cost * period / cap)
end
if worst > 0 then
  return {0, worst, worst_i}
end
for i, key in ipairs(KEYS) do
  -- Once past its TAT a bucket is full: the record can go.
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl)
end
return {1, 0, 0}
