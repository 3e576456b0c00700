-- tests/bench/intake.lua - wrk script of the intake benchmark
-- (tests/bench/bench_intake.py): every request is the same POST with the
-- body and API key taken from the environment, and done() writes the
-- figures as one JSON object to BENCH_WRK_OUT, so the section reads them
-- without parsing wrk's text.
--
--   BENCH_PATH      request path (default /v1/jobs)
--   BENCH_BODY      the request body (a job as JSON)
--   BENCH_API_KEY   sent as "Authorization: Bearer ..." (none when empty)
--   BENCH_WRK_OUT   where done() writes its JSON

local key = os.getenv("BENCH_API_KEY") or ""

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/jobs"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. key
end

-- Shared by intake.lua and webhooks.lua (kept in each file: wrk loads
-- one script).
done = function(summary, latency, requests)
   local out = os.getenv("BENCH_WRK_OUT")
   if not out then return end
   local f = assert(io.open(out, "w"))
   local e = summary.errors
   f:write(string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
   f:close()
end
