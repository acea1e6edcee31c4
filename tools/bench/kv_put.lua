-- wrk script for tools/kv-bench: PUT /v1/kv/<key> with a VALUE_SIZE-byte body (default 100),
-- keys random over KEY_SPACE (default 100,000). Prints one machine-readable line (microseconds):
-- BENCH n=.. secs=.. errors=.. p50=.. p99=.. p90=.. p999=.. (p90 and p99.9 last: older parsers
-- read the first five fields)
local vsize = tonumber(os.getenv("VALUE_SIZE") or "100")
local kspace = tonumber(os.getenv("KEY_SPACE") or "100000")
local body = string.rep("v", vsize)

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8), 16) or 0))
  wrk.method = "PUT"
end

function request()
  return wrk.format(nil, string.format("/v1/kv/k%07d", math.random(0, kspace - 1)), nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH n=%d secs=%.3f errors=%d p50=%d p99=%d p90=%d p999=%d\n",
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(90), latency:percentile(99.9)))
end
