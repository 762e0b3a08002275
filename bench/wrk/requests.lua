-- wrk script: one request per line of WRK_REQUESTS ("METHOD<TAB>PATH<TAB>TOKEN"), round robin,
-- with WRK_BODY as the body of POSTs. Each wrk thread starts at a different line.
-- With WRK_IDEMPOTENCY set, each POST carries an Idempotency-Key of its own (WRK_IDEMPOTENCY,
-- the thread and a counter: unique within the run, so none is a replay).
-- Only 2xx answers count: `ok` and `rps` are 2xx answers (all others are in non2xx).
local lines = {}
for line in io.lines(os.getenv("WRK_REQUESTS")) do
  local method, path, token = line:match("([^\t]+)\t([^\t]+)\t?(.*)")
  lines[#lines + 1] = {method, path, token}
end
local body = os.getenv("WRK_BODY") or ""
local nonce = os.getenv("WRK_IDEMPOTENCY") or ""
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("start", counter * 7919)
  thread:set("tid", counter)
  threads[#threads + 1] = thread
end

ok = 0
statuses = {}
local i = nil
request = function()
  if i == nil then i = start or 0 end
  i = i + 1
  local r = lines[(i % #lines) + 1]
  local headers = {["Content-Type"] = "application/json"}
  if r[3] ~= "" then headers["Authorization"] = "Bearer " .. r[3] end
  if r[1] == "POST" and nonce ~= "" then
    headers["Idempotency-Key"] = string.format("%s-%d-%d", nonce, tid or 0, i)
  end
  return wrk.format(r[1], r[2], headers, r[1] == "POST" and body or nil)
end

response = function(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 end
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local good = 0
  local seen = {}
  for _, thread in ipairs(threads) do
    good = good + (thread:get("ok") or 0)
    for status, n in pairs(thread:get("statuses") or {}) do seen[status] = (seen[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(seen) do parts[#parts + 1] = string.format("%d:%d", status, n) end
  io.write("STATUSES " .. table.concat(parts, ",") .. "\n")
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.1f p50=%.3f p99=%.3f errors=%d non2xx=%d total=%d ok=%d\n",
    good / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests - good, summary.requests, good))
end
