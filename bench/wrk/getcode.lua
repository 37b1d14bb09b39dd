-- GET /refer/getcode?email=userN@example.com for N in [BENCH_FIRST, BENCH_FIRST + BENCH_COUNT):
-- in turn (a small set that stays in the code cache) or at random (BENCH_RANDOM=1, every user).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local first = bench.number("BENCH_FIRST", 1)
local count = bench.number("BENCH_COUNT", 1000)
local random = bench.env("BENCH_RANDOM", "0") == "1"
local i = 0

function setup(thread)
  math.randomseed(os.time())
end

function request()
  local n
  if random then
    n = math.random(count)
  else
    i = i % count + 1
    n = i
  end
  return wrk.format("GET", "/refer/getcode?email=" .. bench.email(first + n - 1))
end
