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

local M = {}

local dict = ngx.shared.fizbuz_budget
local floor = math.floor

-- A success is a request whose last upstream try answered 200: "200",
-- "500 : 200", "502, 200" (a door.js call's try shows through the same map).
-- Answers made by nginx itself (refusals, 404s, cached /ready) are not.
function M.deposit(window)
    local statuses = ngx.var.fizbuz_upstream_status
    if statuses and statuses:sub(-3) == "200" then
        dict:incr("s" .. floor(ngx.now()), 1, 0, window + 1)
    end
end

-- Grants or refuses one retry; sets $fizbuz_retry to "granted" or "spent" for
-- the retry location's `if` and the access log. A try that found every host
-- at its cap (a refusal for load, $fizbuz_busy) is never retried: it takes nothing.
function M.withdraw(share, per_second, window)
    if ngx.var.fizbuz_busy == "1" then
        return
    end
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
