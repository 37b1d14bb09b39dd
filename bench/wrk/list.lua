-- GET /referals/list?user_id=BENCH_USER&limit=BENCH_LIMIT as that user (token in BENCH_TOKEN).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local path = string.format(
  "/referals/list?user_id=%s&limit=%s&offset=%s",
  bench.env("BENCH_USER", "1"), bench.env("BENCH_LIMIT", "100"), bench.env("BENCH_OFFSET", "0")
)
local headers = { ["authorization"] = bench.env("BENCH_TOKEN", "") }

function request()
  return wrk.format("GET", path, headers)
end
