"""The one settings object of every Stampede process.

Everything configurable comes from environment variables with the ``STAMPEDE_`` prefix;
nested groups use ``__`` (``STAMPEDE_DB__POOL_SIZE=10``). Nothing else in the code base
reads ``os.environ``. Secrets (the database URL carries the password) have no default
outside the ``dev`` profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The dev profile's credentials match what the local stack (``make up``) creates.
DEV_DATABASE_URL = "postgresql+asyncpg://stampede:stampede@127.0.0.1:56432/stampede"
DEV_MIGRATION_URL = "postgresql+asyncpg://stampede:stampede@127.0.0.1:55432/stampede"
DEV_CACHE_REDIS_URL = "redis://127.0.0.1:56379/0"


class DatabaseSettings(BaseModel):
    """Postgres, reached through the PgBouncer sidecar in transaction mode.

    Connection math (see README): each api process holds at most
    ``pool_size + max_overflow`` client connections to its local PgBouncer; PgBouncer
    multiplexes them onto ``default_pool_size`` server connections per pod.
    """

    url: SecretStr | None = None
    # Alembic runs DDL straight against Postgres, never through transaction pooling.
    migration_url: SecretStr | None = None
    pool_size: int = Field(10, ge=1, le=500)
    max_overflow: int = Field(10, ge=0, le=500)
    pool_timeout_s: float = Field(5.0, gt=0)
    pool_recycle_s: int = Field(1800, ge=-1)
    connect_timeout_s: float = Field(5.0, gt=0)
    statement_timeout_ms: int = Field(10_000, ge=0)
    echo: bool = False


class RedisSettings(BaseModel):
    """The cache Redis (LRU, no persistence). Never the Celery broker."""

    cache_url: SecretStr | None = None
    socket_timeout_s: float = Field(0.05, gt=0)
    connect_timeout_s: float = Field(0.1, gt=0)
    max_connections: int = Field(64, ge=1)


class CacheSettings(BaseModel):
    """The HTTP response cache (DESIGN.md §4): L1 in-process in front of L2 Redis.

    Route policies (TTL, tags, Vary) live next to the routes; these are the knobs that
    hold for every route.
    """

    # Off: no response-cache middleware at all (bench baseline, emergencies). Writes still
    # invalidate, so processes with the cache on never serve what this one changed.
    enabled: bool = True
    # Prefix of every Redis key and of the pub/sub channel; bump to orphan old entries.
    namespace: str = Field("stampede:http:v1", pattern=r"^[A-Za-z0-9:._-]{1,64}$")
    l1_max_entries: int = Field(4096, ge=1)
    # Bounds how long a process can miss an invalidation broadcast (Redis down).
    l1_ttl_s: float = Field(2.0, gt=0, le=60)
    # Every Redis round trip of the cache is cut off here; the request goes on without it.
    op_timeout_s: float = Field(0.05, gt=0, le=5)
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(1.0, gt=0)
    # The recompute lock's lease: longer than a slow recomputation, short enough that a
    # crashed holder does not block the key for long.
    lock_lease_s: float = Field(5.0, gt=0)
    # How long a request waits for another process's recomputation before doing its own.
    lock_wait_s: float = Field(1.0, gt=0)
    compress_min_bytes: int = Field(1024, ge=0)
    # Level 5: most of level 9's ratio on JSON at a fraction of the CPU; done once per store.
    gzip_level: int = Field(5, ge=1, le=9)
    # Invalidation markers must outlive every entry written before them (TTL + stale).
    tag_marker_ttl_s: int = Field(3600, ge=60)


class ApiSettings(BaseModel):
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    readiness_timeout_s: float = Field(1.0, gt=0)
    title: str = "Stampede API"


class ServerSettings(BaseModel):
    """gunicorn + uvicorn workers (read by ``services/api/gunicorn_conf.py``)."""

    bind: str = "127.0.0.1:8000"
    workers: int = Field(2, ge=1, le=64)
    # Recycling workers bounds slow leaks; the jitter keeps them from restarting together.
    max_requests: int = Field(20_000, ge=0)
    max_requests_jitter: int = Field(2_000, ge=0)
    # Longer than any load balancer idle timeout in front of us (AWS ALB: 60 s), so the
    # balancer, not us, closes idle connections and never sends on a half-closed one.
    keepalive_s: int = Field(65, ge=1)
    timeout_s: int = Field(30, ge=1)
    graceful_timeout_s: int = Field(25, ge=1)
    backlog: int = Field(2048, ge=64)


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True
    access_log: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STAMPEDE_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    profile: Literal["dev", "prod"] = "prod"
    db: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    api: ApiSettings = ApiSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _secrets_present(self) -> Settings:
        if self.profile == "dev":
            db = self.db.model_copy(
                update={
                    "url": self.db.url or SecretStr(DEV_DATABASE_URL),
                    "migration_url": self.db.migration_url or SecretStr(DEV_MIGRATION_URL),
                }
            )
            redis = self.redis.model_copy(
                update={"cache_url": self.redis.cache_url or SecretStr(DEV_CACHE_REDIS_URL)}
            )
            object.__setattr__(self, "db", db)
            object.__setattr__(self, "redis", redis)
        missing = [
            name
            for name, value in (
                ("STAMPEDE_DB__URL", self.db.url),
                ("STAMPEDE_REDIS__CACHE_URL", self.redis.cache_url),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"required outside the dev profile: {', '.join(missing)}")
        return self

    @property
    def database_url(self) -> str:
        assert self.db.url is not None  # guaranteed by _secrets_present
        return self.db.url.get_secret_value()

    @property
    def migration_database_url(self) -> str:
        url = self.db.migration_url or self.db.url
        assert url is not None
        return url.get_secret_value()

    @property
    def cache_redis_url(self) -> str:
        assert self.redis.cache_url is not None
        return self.redis.cache_url.get_secret_value()
