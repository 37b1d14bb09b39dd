-- POST /referals/register {"email": <new each time>, "code": BENCH_CODE}: a write transaction each.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local code = bench.env("BENCH_CODE", "bench0000003")
local prefix = bench.env("BENCH_PREFIX", "run")
local headers = { ["Content-Type"] = "application/json" }
local i = 0

function request()
  i = i + 1
  local body = string.format('{"email": "new-%s-%d@example.com", "code": "%s"}', prefix, i, code)
  return wrk.format("POST", "/referals/register", headers, body)
end
