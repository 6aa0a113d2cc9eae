-- wrk script for bench/tiers.py: POST /api/v1/purchases at a fixed rate per wrk thread.
-- Arguments (after --): members file (one uuid a line), API key, run id, requests/s per thread.
-- Each request has its own external_id and a random member. wrk calls delay() before every
-- request: each call takes the thread's next send slot (slots `1/rate` apart) and waits for
-- it, so the offered load is the same whether the server is idle or busy (a slot missed
-- because every connection was waiting is skipped, not made up in a burst). wrk measures
-- latency from the moment the request is written, so the wait is not counted.
-- done() prints one line "WRK_JSON {...}" that tiers.py parses.

local ffi = require("ffi")
ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } tiers_bench_timespec;
    int clock_gettime(int clk_id, tiers_bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("tiers_bench_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local members = {}
local counter = 0
local prefix = ""
local headers = {}
local threads_made = 0
local interval_ms = 0
local next_slot = 0
local stamp, stamp_at = "", -1

function setup(thread)
    threads_made = threads_made + 1
    thread:set("tid", threads_made)
end

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then
            members[#members + 1] = line
        end
    end
    if #members == 0 then
        error("no members in " .. args[1])
    end
    prefix = args[3] .. "-" .. tostring(tid) .. "-"
    interval_ms = 1000 / tonumber(args[4])
    math.randomseed(os.time() * 1000 + tid * 7919)
    headers["Content-Type"] = "application/json"
    headers["Authorization"] = "Bearer " .. args[2]
end

function delay()
    local now = now_ms()
    if next_slot < now then
        next_slot = now -- behind schedule: start from now rather than burst to catch up
    end
    local wait = next_slot - now
    next_slot = next_slot + interval_ms
    return math.floor(wait)
end

local function occurred_at()
    local t = os.time()
    if t ~= stamp_at then
        stamp_at = t
        stamp = os.date("!%Y-%m-%dT%H:%M:%SZ", t - 60)
    end
    return stamp
end

function request()
    counter = counter + 1
    local body = '{"external_id":"' .. prefix .. counter
        .. '","member_id":"' .. members[math.random(#members)]
        .. '","occurred_at":"' .. occurred_at()
        .. '","store":"S1","currency":"CNY","lines":[{"sku":"A","quantity":2,'
        .. '"unit_price":"10.50","category":"general"}],"total":"21.00"}'
    return wrk.format("POST", "/api/v1/purchases", headers, body)
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
