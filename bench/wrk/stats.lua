-- GET /refer/stats as the user whose token is BENCH_TOKEN.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local headers = { ["authorization"] = bench.env("BENCH_TOKEN", "") }

function request()
  return wrk.format("GET", "/refer/stats", headers)
end
