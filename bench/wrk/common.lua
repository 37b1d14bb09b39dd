-- Shared by every bench script: settings from the environment and a one-line JSON summary.
-- The Python driver (bench/load.py) sets BENCH_* variables, runs wrk and reads the BENCH_JSON line.

bench = {}

function bench.env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

function bench.number(name, default)
  return tonumber(bench.env(name, tostring(default)))
end

function bench.email(n)
  return "user" .. n .. "@example.com"
end

-- BENCH_DELAY_MS > 0 paces every connection (an open-ish load at a fixed rate instead of flat out).
local pause = bench.number("BENCH_DELAY_MS", 0)
if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"timeout": %d, "status": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max
  ))
end
