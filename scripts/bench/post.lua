-- wrk script for scripts/bench.sh: POSTs a JSON body, counts non-200 answers and
-- prints one machine-readable line at the end:
--   BENCH requests=N duration_us=N rps=F p50_us=N p99_us=N non200=N first_bad_status=N
--         sock_connect=N sock_read=N sock_write=N sock_timeout=N
-- Environment:
--   WRK_BODY_FILE  file with the request body (required)
--   WRK_API_KEY    bearer token (default sk-bench-client-key)

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open WRK_BODY_FILE " .. tostring(path))
  local s = f:read("*a")
  f:close()
  return (s:gsub("%s+$", ""))
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("WRK_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_API_KEY") or "sk-bench-client-key")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  first_bad_status = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad_status == 0 then
      first_bad_status = status
    end
  end
end

function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non200") or 0)
    local s = t:get("first_bad_status") or 0
    if first == 0 and s ~= 0 then first = s end
  end
  local secs = summary.duration / 1e6
  local rps = 0
  if secs > 0 then rps = summary.requests / secs end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d non200=%d first_bad_status=%d " ..
    "sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d\n",
    summary.requests, summary.duration, rps,
    latency:percentile(50), latency:percentile(99), bad, first,
    e.connect, e.read, e.write, e.timeout))
end
