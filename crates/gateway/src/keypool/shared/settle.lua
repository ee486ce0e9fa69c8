-- llmux_settle v1: correct what admissions charged (token estimates settled with the real
-- usage; requests that never reached the provider given back).
-- KEYS[i]: bucket i (as llmux_admit). ARGV[3i-2], ARGV[3i-1], ARGV[3i]: capacity, period
-- (microseconds), delta (tokens; negative gives back, never beyond a full bucket).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local delta = tonumber(ARGV[3 * i])
  local v = redis.call('GET', key)
  local tat = now
  if v then
    tat = math.max(tonumber(v) or now, now)
  end
  if delta > 0 then
    tat = tat + math.ceil(delta * period / cap)
  elseif delta < 0 then
    tat = math.max(now, tat - math.ceil(-delta * period / cap))
  end
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
return 1
