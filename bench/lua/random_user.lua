-- GET <path> for a random seeded user: wrk -s random_user.lua URL -- USERS SEED PATH
-- PATH is a format with one %d for the user id, e.g. /users/%d or /users/%d/orders.
-- Each thread draws its own sequence (SEED + thread number): the same ids every run.
local threads = 0

function setup(thread)
    thread:set("thread_number", threads)
    threads = threads + 1
end

local users, path

function init(args)
    users = tonumber(args[1])
    math.randomseed(tonumber(args[2]) + thread_number)
    path = args[3]
end

function request()
    return wrk.format("GET", string.format(path, math.random(1, users)))
end
