-- wrk script: durable sends. Each request picks the next (token,
-- conversation) pair from pairs.lua, written by bench_http.sh.
local pairs_ = dofile(os.getenv("BENCH_PAIRS"))
local n = #pairs_
local i = 0
local counter = 0

function setup(thread)
    thread:set("offset", i)
    i = i + 1
end

function init(args)
    i = offset or 0
end

request = function()
    i = i + 1
    counter = counter + 1
    local p = pairs_[(i % n) + 1]
    local body = '{"content":"bench message ' .. counter .. '"}'
    return wrk.format("POST", "/api/messages/conversations/" .. p[2] .. "/messages",
        { ["Authorization"] = "Bearer " .. p[1],
          ["Content-Type"] = "application/json" }, body)
end

local statuses = {}
response = function(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end
