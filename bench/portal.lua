-- wrk script for bench/portal.py: GET one path as signed-in members.
-- Arguments (after --): sessions file (one Cookie header value a line), path, requests/s per
-- thread (0: closed loop, each connection sends its next request when the answer is in).
-- Requests take the sessions in turn, each thread from another starting point. With a rate,
-- wrk calls delay() before every request: each call takes the thread's next send slot (slots
-- `1/rate` apart) and waits for it, so the offered load is the same whether the server is
-- idle or busy (a slot missed because every connection was waiting is skipped, not made up
-- in a burst). wrk measures latency from the moment the request is written, so the wait is
-- not counted. done() prints one line "WRK_JSON {...}" that portal.py parses.

local ffi = require("ffi")
ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } portal_bench_timespec;
    int clock_gettime(int clk_id, portal_bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("portal_bench_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local requests = {}
local turn = 0
local threads_made = 0
local interval_ms = 0
local next_slot = 0

function setup(thread)
    threads_made = threads_made + 1
    thread:set("tid", threads_made)
end

local function paced_delay()
    local now = now_ms()
    if next_slot < now then
        next_slot = now -- behind schedule: start from now rather than burst to catch up
    end
    local wait = next_slot - now
    next_slot = next_slot + interval_ms
    return math.floor(wait)
end

function init(args)
    local path = args[2]
    for line in io.lines(args[1]) do
        if #line > 0 then
            local headers = {}
            headers["Cookie"] = line
            headers["Accept"] = "text/html"
            headers["Accept-Language"] = "en-US,en;q=0.9"
            requests[#requests + 1] = wrk.format("GET", path, headers)
        end
    end
    if #requests == 0 then
        error("no sessions in " .. args[1])
    end
    turn = tid % #requests
    local rate = tonumber(args[3])
    if rate > 0 then
        -- wrk looks for delay() after the first thread's init(): only paced runs have one.
        interval_ms = 1000 / rate
        delay = paced_delay
    end
end

function request()
    turn = turn % #requests + 1
    return requests[turn]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.min, latency.mean, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9)))
end
