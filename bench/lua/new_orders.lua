-- POST /orders, each a new order: wrk -s new_orders.lua URL -- USERS PRODUCTS SEED RUN
-- A random seeded user, two distinct random products (one of each), and an
-- Idempotency-Key no other request of this run (RUN) or thread has used.
local threads = 0

function setup(thread)
    thread:set("thread_number", threads)
    threads = threads + 1
end

local users, products, key_prefix
local sent = 0

function init(args)
    users = tonumber(args[1])
    products = tonumber(args[2])
    math.randomseed(tonumber(args[3]) + thread_number)
    key_prefix = args[4] .. "-" .. thread_number .. "-"
end

function request()
    sent = sent + 1
    local first = math.random(1, products)
    local second = math.random(1, products - 1)
    if second >= first then
        second = second + 1
    end
    local body = string.format(
        '{"user_id":%d,"items":[{"product_id":%d,"quantity":1},{"product_id":%d,"quantity":1}]}',
        math.random(1, users), first, second
    )
    local headers = {
        ["Content-Type"] = "application/json",
        ["Idempotency-Key"] = key_prefix .. sent,
    }
    -- wrk.format uses wrk.headers (wrk -H, e.g. the API key) only when given none.
    for name, value in pairs(wrk.headers) do
        if headers[name] == nil then
            headers[name] = value
        end
    end
    return wrk.format("POST", "/orders", headers, body)
end
