-- wrk script used by scripts/bench for every load scenario.
--
-- BENCH_PIPELINE=N (N > 1) sends N copies of the request (method, path and
-- -H headers as given to wrk) in one write, as wrk's pipeline.lua does. wrk
-- parses the string returned by request() once per thread, counts the
-- requests in it and then counts every response: `requests` below is the
-- number of responses, and one latency sample is recorded per batch (the
-- time until the last of the N responses arrived).
--
-- BENCH_LIMIT=N (N > 0; the profile phase, with wrk -t1) ends wrk after N
-- responses: the thread prints "BENCH requests=N bad=K" (K: responses not
-- 2xx) and exits the process, since a signal could not cut wrk's wait for
-- -d short (it may land on the thread, not on the sleeping main one).
-- Requests still in flight then (at most one per connection, 16 when
-- pipelined) may have been served but are not counted.
--
-- done() prints one machine-readable line, so nothing depends on wrk's
-- human-readable units.

local depth = tonumber(os.getenv("BENCH_PIPELINE") or "1") or 1
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0") or 0

if limit > 0 then
   local seen, bad = 0, 0

   response = function(status, headers, body)
      seen = seen + 1
      if status < 200 or status > 299 then
         bad = bad + 1
      end
      if seen == limit then
         io.write(string.format("BENCH requests=%d bad=%d\n", seen, bad))
         io.stdout:flush()
         os.exit(0)
      end
   end
end

if depth > 1 then
   local batch

   init = function(args)
      local r = {}
      for i = 1, depth do
         r[i] = wrk.format()
      end
      batch = table.concat(r)
   end

   request = function()
      return batch
   end
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
      "connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
