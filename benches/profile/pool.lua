local tokens = {}
for line in io.lines("/tmp/perf/pool.txt") do if #line > 0 then tokens[#tokens + 1] = line end end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/x", { ["Authorization"] = "Bearer " .. tokens[i] })
end
