-- wrk script: POST /send with a different receiver on every request.
--
--   wrk -t1 -c64 -d20s -s bench/send.lua http://127.0.0.1:PORT/send -- OFFSET
--
-- The service delays a receiver exponentially (1 s after its first message, then
-- 2 s, 4 s...), so a fixed receiver would measure 429s. Receivers come from a counter:
-- +1 AAA 555 NNNN over twenty ordinary area codes, 200,000 numbers that phonenumbers
-- takes as possible and FIXED_LINE_OR_MOBILE (never premium-rate or shared-cost).
-- OFFSET (default 0) starts the counter elsewhere, so a warm-up and the measured run
-- never share a receiver. Threads interleave: thread i of n takes i, i+n, i+2n...
--
-- At the end, one line `BENCH_JSON {...}` gives the counts, the 2xx and other statuses
-- and the latency percentiles in microseconds, for bench/run.py to read.

local AREAS = { "202", "206", "212", "213", "303", "305", "312", "404", "415", "503",
                "512", "602", "617", "702", "713", "718", "801", "813", "919", "971" }
local SPACE = #AREAS * 10000
local BODY_TEXT = "Your verification code is 123456"

local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function init(args)
   offset = tonumber(args[1] or "0") or 0
   nthreads = tonumber(args[2] or "1") or 1
   counter = 0
   ok = 0
   other = 0
   statuses = {}
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

local function receiver(n)
   local i = n % SPACE
   local area = AREAS[math.floor(i / 10000) + 1]
   return string.format("+1%s555%04d", area, i % 10000)
end

function request()
   local n = offset + thread_index + counter * nthreads
   counter = counter + 1
   local body = string.format('{"sender":"+15017122661","receiver":"%s","body":"%s"}',
      receiver(n), BODY_TEXT)
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      other = other + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
   end
end

local function status_json()
   -- statuses live in each thread's own Lua state: fetch them one code at a time.
   local codes = { "400", "403", "404", "413", "415", "429", "500", "502", "503", "504" }
   local parts = {}
   for _, code in ipairs(codes) do
      local count = 0
      for _, t in ipairs(threads) do
         local s = t:get("statuses")
         if s and s[code] then
            count = count + s[code]
         end
      end
      if count > 0 then
         table.insert(parts, string.format('"%s":%d', code, count))
      end
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local total_ok, total_other = 0, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_other = total_other + (t:get("other") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"ok":%d,"other":%d,"statuses":%s,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
      '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d}}\n',
      summary.duration, summary.requests, summary.bytes, total_ok, total_other, status_json(),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
