-- wrk script used by scripts/bench for every load scenario.
--
-- BENCH_PIPELINE=N (N > 1) sends N copies of the request (method, path and
-- -H headers as given to wrk) in one write, as wrk's pipeline.lua does. wrk
-- parses the string returned by request() once per thread, counts the
-- requests in it and then counts every response: `requests` below is the
-- number of responses, and one latency sample is recorded per batch (the
-- time until the last of the N responses arrived).
--
-- done() prints one machine-readable line, so nothing depends on wrk's
-- human-readable units.

local depth = tonumber(os.getenv("BENCH_PIPELINE") or "1") or 1

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
