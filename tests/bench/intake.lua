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

-- done(): the figures as JSON into $BENCH_WRK_OUT (wrk_report.lua, next
-- to this script).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")
