"""The one settings object of every Stampede process.

Everything configurable comes from environment variables with the ``STAMPEDE_`` prefix;
nested groups use ``__`` (``STAMPEDE_DB__POOL_SIZE=10``). Nothing else in the code base
reads ``os.environ``. Secrets (the database and broker URLs carry passwords) have no
default outside the ``dev`` profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The dev profile's credentials match what the local stack (``make up``) creates.
DEV_DATABASE_URL = "postgresql+asyncpg://stampede:stampede@127.0.0.1:26432/stampede"
DEV_MIGRATION_URL = "postgresql+asyncpg://stampede:stampede@127.0.0.1:25432/stampede"
DEV_CACHE_REDIS_URL = "redis://127.0.0.1:26379/0"
DEV_BROKER_URL = "redis://127.0.0.1:26380/0"
DEV_SMTP_HOST = "127.0.0.1"
DEV_SMTP_PORT = 25025
# Only ever signs the local stack's keys; never a secret anywhere else.
DEV_API_KEY_SECRET = "stampede-dev-only-api-key-secret-not-for-production"  # noqa: S105


class DatabaseSettings(BaseModel):
    """Postgres, reached through the PgBouncer sidecar in transaction mode.

    Connection math (docs/architecture.md): each api process holds at most
    ``pool_size + max_overflow`` client connections to its local PgBouncer; PgBouncer
    multiplexes them onto ``default_pool_size`` server connections per pod.
    """

    url: SecretStr | None = Field(
        None,
        description="`postgresql+asyncpg://user:pass@127.0.0.1:6432/db`, through PgBouncer. "
        "Required outside the dev profile.",
    )
    # Alembic runs DDL straight against Postgres, never through transaction pooling.
    migration_url: SecretStr | None = Field(
        None, description="Straight to Postgres, for Alembic and the seeder (default: `url`)."
    )
    # All kept: SQLAlchemy closes an overflow connection whenever one is returned while
    # pool_size others sit idle, which under load at the pool's edge is tens of times a
    # second, each replaced by a new TCP connection, SCRAM login and set of prepared
    # statements (docs/benchmarks.md). Overflow is for bursts a process rarely sees.
    pool_size: int = Field(20, ge=1, le=500, description="Client connections kept per process.")
    max_overflow: int = Field(
        0,
        ge=0,
        le=500,
        description="Extra client connections per process under bursts, closed when returned "
        "while `pool_size` are idle.",
    )
    pool_timeout_s: float = Field(
        5.0, gt=0, description="Wait for a pooled connection, then answer 503."
    )
    pool_recycle_s: int = Field(1800, ge=-1, description="Reconnect connections older than this.")
    connect_timeout_s: float = Field(5.0, gt=0)
    connect_retry_s: float = Field(
        2.0,
        ge=0,
        description="Keep retrying a refused connect this long: the local pooler restarting.",
    )
    statement_timeout_ms: int = Field(
        10_000, ge=0, description="Client-side bound on any statement (`0`: none)."
    )
    echo: bool = Field(False, description="Log every SQL statement.")
    # PgBouncer >= 1.21 with max_prepared_statements > 0 (the chart's sidecar and the local
    # stack run 1.24) keeps a client's prepared statements valid on every server
    # connection. Behind an older or unknown pooler in transaction mode, turn this off.
    pooler_tracks_prepared_statements: bool = Field(
        True,
        description="The pooler tracks prepared statements (PgBouncer >= 1.21 with "
        "`max_prepared_statements`): cache them, and run the api's one-statement reads "
        "without BEGIN/COMMIT. `false`: never reuse one, reads in a transaction (safe "
        "behind any transaction pooler).",
    )


class RedisSettings(BaseModel):
    """The cache Redis (LRU, no persistence). Never the Celery broker."""

    cache_url: SecretStr | None = Field(
        None, description="The cache Redis. Required outside the dev profile."
    )
    socket_timeout_s: float = Field(
        0.05, gt=0, description="The cache must never make a request slow."
    )
    connect_timeout_s: float = Field(0.1, gt=0)
    max_connections: int = Field(64, ge=1, description="Per process.")
    open_at_start: bool = Field(
        True,
        description="Open all `max_connections` when the process starts, not at the first "
        "peak of load (best effort: a Redis that is down then is connected to later).",
    )


class BrokerSettings(BaseModel):
    """The Celery broker: its own Redis (``noeviction``, AOF), never the LRU cache."""

    url: SecretStr | None = Field(
        None, description="The broker Redis, never the cache one. Required by worker and relay."
    )
    # Redis has no broker-side ack deadline: a message a worker took but never acked is
    # handed out again after this long. It must outlast the longest a worker may hold a
    # message (hard time limit, plus the countdown of a retry, which waits unacked in the
    # worker), or a live task is delivered twice. Checked in Settings below.
    # Also how long a message held by a worker that died, or whose broker connection
    # dropped, waits before it is handed out again: kept short by short retry delays.
    visibility_timeout_s: int = Field(
        180, ge=1, description="Above the longest a message may stay unacked (checked)."
    )
    restore_interval_s: int = Field(
        10, ge=1, description="How often to look for messages a dead worker took, never acked."
    )
    connect_timeout_s: float = Field(2.0, gt=0)


class WorkerSettings(BaseModel):
    """The Celery worker that sends order confirmations."""

    concurrency: int = Field(2, ge=1, le=64, description="Prefork children.")
    soft_time_limit_s: int = Field(30, ge=1)
    time_limit_s: int = Field(45, ge=1)
    # Many short retries rather than few long ones: a retry's countdown is spent unacked
    # in the worker, so the cap bounds visibility_timeout, which bounds how long a
    # message stranded by a dead worker or a broker outage waits (docs/delivery.md).
    max_retries: int = Field(16, ge=0)
    # Whole seconds: Celery's backoff works in integers.
    retry_backoff_s: int = Field(
        2, ge=1, description="Backoff with full jitter: a random delay in [0, base * 2^retries]."
    )
    retry_backoff_max_s: int = Field(60, ge=1, description="Cap of that delay.")
    # A redelivered task waits for the lease to expire before it tries again. Longer than
    # the hard time limit, so a live attempt is never overtaken.
    claim_lease_s: int = Field(
        60, ge=1, description="The lease an attempt holds on an email (longer than the limit)."
    )
    pool_size: int = Field(2, ge=1, le=50, description="Database connections per child.")
    # Served by the main process for all prefork children (prometheus_client
    # multiprocess mode, files in metrics_multiproc_dir, emptied at start).
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="The worker's `/metrics` (off if unset)."
    )
    metrics_addr: str = "127.0.0.1"
    metrics_multiproc_dir: str | None = Field(None, description="Default: a temporary directory.")
    heartbeat_file: str | None = Field(
        None, description="Touched while the consumer consumes; the chart's liveness checks it."
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often it is touched.")
    # Off by default: nothing in the stack consumes them (the metrics come from Celery's
    # signals), and each event is a broker publish: four per email (sent, received,
    # started, succeeded), most of the worker main process's work under load.
    task_events: bool = Field(
        False, description="Celery task events, for Flower or an events exporter."
    )


class RelaySettings(BaseModel):
    """The outbox relay, which moves committed outbox rows to the broker."""

    batch_size: int = Field(100, ge=1, le=10_000, description="Rows published per transaction.")
    # One task, one SMTP session and one claim statement for several emails: the worker's
    # cost per email is mostly per task (the broker's round trips, Celery's bookkeeping,
    # an SMTP session). Small enough that every prefork child gets work from a batch.
    confirmations_per_task: int = Field(
        20, ge=1, le=100, description="Order confirmations published as one task."
    )
    poll_interval_s: float = Field(
        1.0, gt=0, description="Fallback when no NOTIFY arrives (no `listen_url`, or one missed)."
    )
    linger_s: float = Field(
        0.02,
        ge=0,
        le=1,
        description="After a NOTIFY, gather others this long: a burst of orders, one batch.",
    )
    # LISTEN needs a session of its own, which PgBouncer's transaction mode cannot give.
    listen_url: SecretStr | None = Field(
        None, description="A direct Postgres URL for LISTEN; without it the relay only polls."
    )
    # A published row whose task has neither finished nor given up after this long is
    # published again: it covers a message the broker lost (AOF fsyncs once a second), one
    # a worker killed between taking it off the queue and recording it as unacked (kombu's
    # Redis transport does those in two steps) and a task killed by its hard time limit.
    # A row still retrying gets a second chain of attempts: the email's lease and its
    # "sent" record make that harmless, and dead letters are never republished.
    republish_after_s: int = Field(
        300, ge=1, description="Publish again a row whose task neither finished nor died."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="The relay's `/metrics` (off if unset)."
    )
    metrics_addr: str = "127.0.0.1"
    heartbeat_file: str | None = Field(
        None, description="Touched on every turn of the loop; the chart's probes check its age."
    )
    # Finished work and old idempotency keys are deleted by the relay, a batch at a time
    # (short transactions, no long locks). Dead letters and unfinished rows are kept.
    outbox_retention_s: int = Field(
        7 * 86_400, ge=3600, description="Keep finished outbox rows this long."
    )
    # Stripe keeps idempotency keys 24 h: a retry with the same key after that is a new
    # order. Longer than any client's retry horizon.
    idempotency_key_retention_s: int = Field(
        86_400, ge=3600, description="Keep Idempotency-Key answers this long."
    )
    prune_every_s: float = Field(
        60.0, gt=0, description="How often the relay deletes expired rows."
    )
    prune_batch_size: int = Field(1000, ge=1, le=100_000, description="Rows per delete.")


class SmtpSettings(BaseModel):
    """The mail server the worker sends through."""

    host: str | None = Field(None, description="Required by the worker outside the dev profile.")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="`tls`: implicit TLS (465); `starttls`: upgrade a plain one."
    )
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0)
    sender: str = "Stampede Shop <orders@stampede.dev>"
    # Message-IDs are derived from the order so that a duplicate is recognisable (and
    # mergeable by mail clients).
    message_id_domain: str = Field("stampede.dev", description="Right-hand side of Message-IDs.")


class CacheSettings(BaseModel):
    """The HTTP response cache: L1 in-process in front of L2 Redis.

    Route policies (TTL, tags, Vary) live next to the routes; these are the knobs that
    hold for every route.
    """

    # Writes still invalidate when off, so processes with the cache on never serve what
    # this one changed.
    enabled: bool = Field(
        True, description="`false`: no response-cache middleware (bench baseline, emergencies)."
    )
    namespace: str = Field(
        "stampede:http:v1",
        pattern=r"^[A-Za-z0-9:._-]{1,64}$",
        description="Prefix of every Redis key and of the channel; bump to orphan old entries.",
    )
    l1_max_entries: int = Field(4096, ge=1, description="Entries in the in-process tier.")
    l1_ttl_s: float = Field(
        2.0, gt=0, le=60, description="Bounds how long a process can miss an invalidation."
    )
    op_timeout_s: float = Field(
        0.05, gt=0, le=5, description="Budget of every cache Redis call; the request goes on."
    )
    breaker_failures: int = Field(3, ge=1, description="Failures that open the circuit breaker.")
    breaker_reset_s: float = Field(1.0, gt=0, description="How long it stays open.")
    # Longer than a slow recomputation, short enough that a crashed holder does not block
    # the key for long.
    lock_lease_s: float = Field(5.0, gt=0, description="The recompute lock's lease.")
    lock_wait_s: float = Field(
        1.0, gt=0, description="Wait for another process's recomputation, then compute."
    )
    compress_min_bytes: int = Field(1024, ge=0, description="Gzip responses from this size.")
    # Level 5: most of level 9's ratio on JSON at a fraction of the CPU.
    gzip_level: int = Field(5, ge=1, le=9, description="Done once per stored entry.")
    # Markers must outlive every entry written before them (TTL + stale).
    tag_marker_ttl_s: int = Field(3600, ge=60, description="Lifetime of invalidation markers.")
    # Kept well under tag_marker_ttl_s: an entry must not outlive the marker that says
    # it was invalidated.
    stale_if_error_s: int = Field(
        600,
        ge=0,
        le=1800,
        description="How long past its stale window, or after an invalidation, an entry is "
        "kept to answer while the database is unreachable (`0`: never).",
    )


class ApiSettings(BaseModel):
    """The api process: request limits and its readiness check."""

    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Larger bodies get 413.")
    # Browsers and CDNs cap URLs near 8 KiB; ours are a path and three query parameters.
    max_target_bytes: int = Field(
        8 * 1024, ge=256, description="Longer request targets (path and query) get 414."
    )
    # nginx's default buffers allow 4 x 8 KiB of header lines; a bearer key and the usual
    # proxy headers take well under 2 KiB.
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Header sections larger than this get 431."
    )
    max_headers: int = Field(100, ge=16, description="More header fields than this get 431.")
    readiness_timeout_s: float = Field(1.0, gt=0, description="Per check in `/readyz`.")
    title: str = Field("Stampede API", description="The OpenAPI document's title.")


class AuthSettings(BaseModel):
    """API keys (``services.core.api_keys``): what the api checks on every private route."""

    hmac_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="The server key API keys are hashed with (HMAC-SHA256). Required by the "
        "api and the key CLI outside the dev profile; changing it invalidates every key.",
    )
    # Revocation is broadcast over the cache Redis' invalidation channel (milliseconds);
    # this bounds how long a process can miss one when the broadcast itself is lost.
    key_cache_ttl_s: float = Field(
        300.0, gt=0, description="How long a process trusts a key it looked up."
    )
    key_cache_max_entries: int = Field(10_000, ge=1, description="Keys remembered per process.")
    # Unknown prefixes are remembered briefly, so a flood of made-up tokens costs no query
    # each; creating a key broadcasts its prefix, so it is never refused for this long.
    unknown_key_ttl_s: float = Field(
        5.0, ge=0, description="How long an unknown key prefix is remembered."
    )
    last_used_flush_s: float = Field(
        30.0, gt=0, description="Each process writes its keys' `last_used_at` this often."
    )


class RateLimitSettings(BaseModel):
    """Request rate limits, shared by every process and pod through the cache Redis
    (``services.core.rate_limit``). Health checks and the docs are never limited."""

    enabled: bool = Field(True, description="`false`: no limiter (bench baseline).")
    key_rate_per_s: float = Field(50.0, gt=0, description="Per API key, sustained.")
    key_burst: int = Field(200, ge=1, description="Per API key, at once.")
    anonymous_rate_per_s: float = Field(
        20.0, gt=0, description="Per client IP, for requests without a key, sustained."
    )
    anonymous_burst: int = Field(100, ge=1, description="Per client IP, at once.")
    # Each process takes a batch of requests from Redis at once and spends them locally:
    # a Redis call per batch, not per request. The batch is the policy's rate over
    # allowance_ttl_s, at least this, at most a tenth of the burst.
    batch: int = Field(10, ge=1, le=1000, description="Fewest requests a process takes at once.")
    allowance_ttl_s: float = Field(
        1.0, gt=0, le=60, description="Unspent requests of a batch lapse after this."
    )
    op_timeout_s: float = Field(
        0.05, gt=0, le=5, description="Budget of a Redis call; then limit locally."
    )
    # X-Forwarded-For is the client's to write: only the entries our own proxies appended
    # can be believed. 0: the TCP peer is the client.
    trusted_proxy_hops: int = Field(
        0, ge=0, le=10, description="Proxies in front of the api that append X-Forwarded-For."
    )


class ServerSettings(BaseModel):
    """gunicorn + uvicorn workers (read by ``services/api/gunicorn_conf.py``)."""

    bind: str = Field("127.0.0.1:8000", description="`0.0.0.0:8000` in the image.")
    workers: int = Field(2, ge=1, le=64, description="gunicorn workers (about one per core).")
    # Recycling a worker after N requests is a leak guard for sync servers doing a few
    # hundred requests a second. An async worker does thousands a second: a restart every
    # few seconds, each dropping its keep-alive connections onto the other worker,
    # refilling L1 and pools, and stalling p99 (docs/benchmarks.md). The container's
    # memory limit is the leak guard; set this only for a known leak, high, with jitter so
    # the workers never restart together.
    max_requests: int = Field(0, ge=0, description="Recycle a worker after N requests (0: never).")
    max_requests_jitter: int = Field(0, ge=0)
    # Full collections would otherwise walk every module, route and pool object while the
    # event loop stands still (see services.api.lifespan).
    gc_freeze: bool = Field(True, description="`gc.freeze()` what each worker built at startup.")
    # Longer than any load balancer idle timeout in front of us (AWS ALB: 60 s), so the
    # balancer, not us, closes idle connections and never sends on a half-closed one.
    keepalive_s: int = Field(65, ge=1, description="Above load balancers' idle timeouts.")
    timeout_s: int = Field(30, ge=1, description="gunicorn's worker heartbeat timeout.")
    graceful_timeout_s: int = Field(
        25, ge=1, description="On SIGTERM, in-flight requests get this long."
    )
    backlog: int = Field(2048, ge=64)


class MetricsSettings(BaseModel):
    """Prometheus metrics, served apart from the public API port.

    gunicorn runs several worker processes: each writes its samples to files in
    ``multiproc_dir`` (prometheus_client's multiprocess mode) and the master serves
    their aggregate on ``bind``. The directory is emptied when gunicorn starts.
    """

    enabled: bool = True
    bind: str = Field("127.0.0.1:9100", description="The api's `/metrics`, served by the master.")
    multiproc_dir: str | None = Field(None, description="Default: a temporary directory.")
    # See services.core.telemetry.metric_batch. Far below any scrape interval.
    flush_interval_s: float = Field(
        1.0, gt=0, le=10, description="Each process writes its buffered samples this often."
    )


class LogSettings(BaseModel):
    """Logs of every process, JSON lines on stderr, carrying the request id."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(True, description="One JSON object per line.")
    access_log: bool = Field(True, description="One line per request.")
    access_log_flush_s: float = Field(
        0.2, gt=0, le=5, description="Access lines are written in batches, at most this late."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STAMPEDE_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    profile: Literal["dev", "prod"] = Field(
        "prod", description="`dev` fills in the local stack's URLs (`make up`)."
    )
    db: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    broker: BrokerSettings = BrokerSettings()
    worker: WorkerSettings = WorkerSettings()
    relay: RelaySettings = RelaySettings()
    smtp: SmtpSettings = SmtpSettings()

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
            auth = self.auth.model_copy(
                update={"hmac_key": self.auth.hmac_key or SecretStr(DEV_API_KEY_SECRET)}
            )
            object.__setattr__(self, "db", db)
            object.__setattr__(self, "redis", redis)
            object.__setattr__(self, "auth", auth)
            self._apply_dev_worker_defaults()
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
        self._check_worker_timings()
        return self

    def _apply_dev_worker_defaults(self) -> None:
        broker = self.broker.model_copy(
            update={"url": self.broker.url or SecretStr(DEV_BROKER_URL)}
        )
        relay = self.relay.model_copy(
            update={"listen_url": self.relay.listen_url or SecretStr(DEV_MIGRATION_URL)}
        )
        smtp = self.smtp
        if smtp.host is None:
            smtp = smtp.model_copy(
                update={"host": DEV_SMTP_HOST, "port": DEV_SMTP_PORT, "security": "none"}
            )
        object.__setattr__(self, "broker", broker)
        object.__setattr__(self, "relay", relay)
        object.__setattr__(self, "smtp", smtp)

    def _check_worker_timings(self) -> None:
        """The orderings that keep a live task from being delivered or sent twice."""
        worker, broker = self.worker, self.broker
        rules = [
            (worker.soft_time_limit_s < worker.time_limit_s, "soft_time_limit_s < time_limit_s"),
            (self.smtp.timeout_s < worker.soft_time_limit_s, "smtp timeout < soft_time_limit_s"),
            (worker.time_limit_s < worker.claim_lease_s, "time_limit_s < claim_lease_s"),
            (
                worker.time_limit_s + worker.retry_backoff_max_s < broker.visibility_timeout_s,
                "time_limit_s + retry_backoff_max_s < broker visibility_timeout_s",
            ),
            (
                broker.visibility_timeout_s < self.relay.republish_after_s,
                "broker visibility_timeout_s < relay republish_after_s",
            ),
        ]
        broken = [rule for holds, rule in rules if not holds]
        if broken:
            raise ValueError(f"worker timings must satisfy: {'; '.join(broken)}")

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

    @property
    def api_key_secret(self) -> bytes:
        """Required by the api and the key CLI only: the worker never checks a key."""
        if self.auth.hmac_key is None:
            raise ValueError("STAMPEDE_AUTH__HMAC_KEY is required outside the dev profile")
        return self.auth.hmac_key.get_secret_value().encode()

    # The api never talks to the broker or to SMTP, so these are required only by the
    # processes that do: the worker and the relay read them at start-up and fail fast.

    @property
    def broker_url(self) -> str:
        if self.broker.url is None:
            raise ValueError("STAMPEDE_BROKER__URL is required outside the dev profile")
        return self.broker.url.get_secret_value()

    @property
    def smtp_host(self) -> str:
        if self.smtp.host is None:
            raise ValueError("STAMPEDE_SMTP__HOST is required outside the dev profile")
        return self.smtp.host
