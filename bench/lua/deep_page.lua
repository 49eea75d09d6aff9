-- GET a product list page deep in the catalogue: wrk -s deep_page.lua URL -- PRODUCTS SEED
-- /products?category=catN&cursor=k2_<hex id>: a random category (of the seeder's 20) and
-- a keyset cursor in the second half of the catalogue, at the same relative depth at any
-- scale (id 500-600 of 1,000 products; 50,000-99,600 of 100,000), always a full page
-- after it. Each thread draws its own sequence (SEED + thread number).
local threads = 0

function setup(thread)
    thread:set("thread_number", threads)
    threads = threads + 1
end

local low, high

function init(args)
    local products = tonumber(args[1])
    math.randomseed(tonumber(args[2]) + thread_number)
    low = math.floor(products / 2)
    -- 20 categories: a page of 20 spans 400 ids of the catalogue.
    high = math.max(low, products - 400)
end

function request()
    local path = string.format(
        "/products?category=cat%d&cursor=k2_%x", math.random(0, 19), math.random(low, high)
    )
    return wrk.format("GET", path)
end
