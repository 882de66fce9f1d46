-- The front door's retry budget (issue 23), run by nginx's Lua module.
--
-- Retries on another host stay within a share of recent successful requests:
-- over the last WINDOW seconds, retries granted <= share x successes + floor x
-- WINDOW. The floor lets a quiet door still retry a worker's death; the share
-- keeps a door under failures from multiplying its load (a retry storm).
--
-- Counts live in a lua_shared_dict (every nginx worker sees the same ones),
-- one key per second: "s<epoch second>" successes, "r<epoch second>" retries
-- granted, each expiring after the window. incr is atomic, and a worker runs
-- this code without yielding, so two workers can at most both take the last
-- token of one second: the bound holds to within the number of nginx workers.
--
-- deposit() runs in the log phase of every request; withdraw() in the rewrite
-- phase of the retry locations (before their `if`s: rewrite_by_lua_no_postpone).
--
-- The door's CPU per request (bench/results/overload/front_cpu_parts.md): a
-- deposit is a count in this worker's own memory; the shared dict sees it when
-- the second turns, when this worker withdraws, and from a timer every second.
-- No lock or string is made per request; another worker sees a success at most
-- a second late, which can only refuse a retry the exact count would grant.

local M = {}

local dict = ngx.shared.fizbuz_budget
local floor = math.floor

local byte = string.byte
local pending, pending_second = 0, 0  -- this worker's successes not yet in the dict

-- This worker's pending successes into the shared dict, under their own second.
function M.flush(window)
    if pending > 0 then
        dict:incr("s" .. pending_second, pending, 0, window + 1)
        pending = 0
    end
end

-- From init_worker: flush every second, so a worker that falls quiet still
-- shows its last successes to the others.
function M.flush_every(window)
    local ok, err = ngx.timer.every(1, function() M.flush(window) end)
    if not ok then
        ngx.log(ngx.ERR, "retry budget: no flush timer: ", err)
    end
end

-- A success is a request whose last upstream try answered 200: "200",
-- "500 : 200", "502, 200" (a door.js call's try shows through the same map).
-- Answers made by nginx itself (refusals, 404s, cached /ready) are not.
function M.deposit(window)
    local statuses = ngx.var.fizbuz_upstream_status
    if not statuses then
        return
    end
    local a, b, c = byte(statuses, -3, -1)
    if a ~= 50 or b ~= 48 or c ~= 48 then -- "200"
        return
    end
    local now = floor(ngx.now())
    if now ~= pending_second then
        M.flush(window)
        pending_second = now
    end
    pending = pending + 1
end

-- Grants or refuses one retry; sets $fizbuz_retry to "granted" or "spent" for
-- the retry location's `if` and the access log. A try that found every host
-- at its cap (a refusal for load, $fizbuz_busy) is never retried: it takes nothing.
function M.withdraw(share, per_second, window)
    if ngx.var.fizbuz_busy == "1" then
        return
    end
    M.flush(window) -- this worker's own successes count at once
    local now = floor(ngx.now())
    local successes, retries = 0, 0
    for second = now - window + 1, now do
        successes = successes + (dict:get("s" .. second) or 0)
        retries = retries + (dict:get("r" .. second) or 0)
    end
    if retries + 1 > share * successes + per_second * window then
        ngx.var.fizbuz_retry = "spent"
        return
    end
    dict:incr("r" .. now, 1, 0, window + 1)
    ngx.var.fizbuz_retry = "granted"
end

return M
