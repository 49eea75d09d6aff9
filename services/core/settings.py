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


class MetricsSettings(BaseModel):
    """Prometheus metrics, served apart from the public API port.

    gunicorn runs several worker processes: each writes its samples to files in
    ``multiproc_dir`` (prometheus_client's multiprocess mode) and the master serves
    their aggregate on ``bind``. The directory is emptied when gunicorn starts.
    """

    enabled: bool = True
    bind: str = "127.0.0.1:9100"
    multiproc_dir: str | None = None


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
    api: ApiSettings = ApiSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
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
