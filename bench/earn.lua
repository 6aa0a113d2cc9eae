-- wrk script for bench/earn.py: POST /api/v1/purchases, each request with its own external_id
-- and a random member. Arguments (after --): members file (one uuid a line), API key, run id.
-- done() prints one line "WRK_JSON {...}" that earn.py parses.

local members = {}
local counter = 0
local prefix = ""
local headers = {}
local threads_made = 0
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
    prefix = args[3] .. "-" .. tostring(tid) .. "-"
    math.randomseed(os.time() * 1000 + tid * 7919)
    headers["Content-Type"] = "application/json"
    headers["Authorization"] = "Bearer " .. args[2]
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
