"""What every Stampede process shares. Read it as a table of contents:

    settings    the one Settings object (environment variables ``STAMPEDE_*``)
    errors      the error tree; each error knows its HTTP status and problem type
    models      the tables (SQLAlchemy 2 declarative)
    db          the engines, both safe behind PgBouncer in transaction mode
    outbox      enqueueing work for the worker in the transaction of the change
    shop/       the shop's services (users, products, orders) and their cache tags
    cache/      the response cache: policies, keys, entries, tiers, invalidation
    telemetry/  logs, the access log, Prometheus plumbing, pool metrics, Server-Timing

Layers, top to bottom (import-linter checks them): ``shop`` → ``cache`` | ``outbox`` |
``db`` → ``telemetry`` → ``settings`` | ``errors`` | ``models``.
"""
