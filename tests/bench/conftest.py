"""The api in-process on real Postgres, PgBouncer and Redis, for the floors' statement
checks: the same fixtures as the api's own tests."""

from tests.api.conftest import api, cache_redis, clean_cache, client, settings

__all__ = ["api", "cache_redis", "clean_cache", "client", "settings"]
