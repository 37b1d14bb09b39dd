-- POST /user/auth with the right password of seeded users in turn: one bcrypt check each.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local first = bench.number("BENCH_FIRST", 1)
local count = bench.number("BENCH_COUNT", 1000)
local password = bench.env("BENCH_PASSWORD", "")
local headers = { ["Content-Type"] = "application/json" }
local i = 0

function request()
  i = i % count + 1
  local body = string.format('{"email": "%s", "password": "%s"}', bench.email(first + i - 1), password)
  return wrk.format("POST", "/user/auth", headers, body)
end
