-- wrk script: POST {"input.1": n} with n cycling through the valid inputs
-- 0..1022 (each thread from its own offset), then print one JSON summary line.
-- Answers are not checked here (it would slow wrk down); bench/run_bench.py
-- checks a sample of answers before every timed run.

local MIN_INPUT, MAX_INPUT = 0, 1022
local span = MAX_INPUT - MIN_INPUT + 1
local threads = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  thread:set("offset", #threads * 337)
  table.insert(threads, thread)
end

function init(args)
  counter = offset or 0
end

function request()
  local n = MIN_INPUT + counter % span
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format('{"input.1": %d}', n))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, ' ..
    '"p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
