-- The soak's mix: wrk -s mixed.lua URL -- USERS PRODUCTS SEED RUN
-- Per request, drawn at random from this thread's own sequence (SEED + thread number):
--   55 %  GET /products?category=catN        a cached list page (20 categories: hits)
--   18 %  GET /products/{id}                 a product, hit or miss as the TTL goes
--   12 %  GET /users/{id}                    a random user (private cache)
--    2 %  GET /users/{id}/orders             their orders (private cache; a miss costs
--                                            ~10 ms of an api worker today, so more
--                                            would make a million requests take an hour)
--   10 %  GET /products?cursor=k2_<hex>      a page after a random id: a new cache key,
--                                            so mostly misses (and deep keyset pages)
--    3 %  POST /orders                       a new order (its own Idempotency-Key)
-- wrk -H "Authorization: Bearer ..." gives every request the key the private routes need.
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

local function new_order()
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
    for name, value in pairs(wrk.headers) do
        if headers[name] == nil then
            headers[name] = value
        end
    end
    return wrk.format("POST", "/orders", headers, body)
end

function request()
    local draw = math.random(1, 100)
    if draw <= 55 then
        return wrk.format("GET", string.format("/products?category=cat%d", math.random(0, 19)))
    elseif draw <= 73 then
        return wrk.format("GET", string.format("/products/%d", math.random(1, products)))
    elseif draw <= 85 then
        return wrk.format("GET", string.format("/users/%d", math.random(1, users)))
    elseif draw <= 87 then
        return wrk.format("GET", string.format("/users/%d/orders", math.random(1, users)))
    elseif draw <= 97 then
        return wrk.format("GET", string.format("/products?cursor=k2_%x", math.random(1, products)))
    end
    return new_order()
end
