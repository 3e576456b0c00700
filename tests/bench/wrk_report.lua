-- tests/bench/wrk_report.lua — the done() of the wrk scripts of make bench
-- (intake.lua, webhooks.lua load it with dofile): writes the run's
-- figures as one JSON object into the file $BENCH_WRK_OUT (nothing when
-- unset): requests, duration, bytes, errors by kind, non-2xx/3xx answers
-- ("status") and latency percentiles in microseconds.

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
