-- wrk script: one request per line of WRK_REQUESTS ("METHOD<TAB>PATH<TAB>TOKEN"), round robin,
-- with WRK_BODY as the body of POSTs. Each wrk thread starts at a different line.
local lines = {}
for line in io.lines(os.getenv("WRK_REQUESTS")) do
  local method, path, token = line:match("([^\t]+)\t([^\t]+)\t?(.*)")
  lines[#lines + 1] = {method, path, token}
end
local body = os.getenv("WRK_BODY") or ""
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("start", counter * 7919)
end

local i = nil
request = function()
  if i == nil then i = start or 0 end
  i = i + 1
  local r = lines[(i % #lines) + 1]
  local headers = {["Content-Type"] = "application/json"}
  if r[3] ~= "" then headers["Authorization"] = "Bearer " .. r[3] end
  return wrk.format(r[1], r[2], headers, r[1] == "POST" and body or nil)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50=%.3f p99=%.3f errors=%d non2xx=%d total=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests))
end
