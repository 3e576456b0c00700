-- tests/bench/webhooks.lua - wrk script of the webhooks benchmark
-- (tests/bench/bench_webhooks.py): sends pre-signed provider deliveries,
-- each once. The section writes one file of complete HTTP requests per
-- wrk thread, BENCH_HOOKS_FILE.<n> (n = 1, 2, ...), each request preceded
-- by a line with its length in bytes; thread n sends the requests of its
-- file in order. A thread that has sent all of its requests starts again
-- from its first (those repeats are duplicates, answered 200 and applied
-- never; the section counts what was applied in the database). done()
-- writes the figures as one JSON object to BENCH_WRK_OUT.

local counter = 0

setup = function(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
end

local reqs = {}
local n = 0
local next_req = 1

init = function(args)
   local path = os.getenv("BENCH_HOOKS_FILE") .. "." .. thread_no
   local f = assert(io.open(path, "rb"))
   while true do
      local len = f:read("*l")
      if not len then break end
      n = n + 1
      reqs[n] = f:read(tonumber(len))
   end
   f:close()
end

request = function()
   local r = reqs[next_req]
   next_req = next_req + 1
   if next_req > n then next_req = 1 end
   return r
end

-- done(): the figures as JSON into $BENCH_WRK_OUT (wrk_report.lua, next
-- to this script).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")
