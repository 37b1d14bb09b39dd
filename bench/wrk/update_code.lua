-- POST /refer/update_code {"day": 30}, as each user of the token file BENCH_TOKENS in turn.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local tokens = {}
for line in io.lines(bench.env("BENCH_TOKENS", "tokens.txt")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local i = 0

function request()
  i = i % #tokens + 1
  local headers = { ["Content-Type"] = "application/json", ["authorization"] = tokens[i] }
  return wrk.format("POST", "/refer/update_code", headers, '{"day": 30}')
end
