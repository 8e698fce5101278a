-- wrk script: history pages of 200 previews from one conversation.
local pairs_ = dofile(os.getenv("BENCH_PAIRS"))
local p = pairs_[1]
request = function()
    return wrk.format("GET", "/api/messages/conversations/" .. p[2] ..
        "/messages?after_seq=0&limit=200",
        { ["Authorization"] = "Bearer " .. p[1] })
end
