from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.settings import DEV_DATABASE_URL, Settings

PROD = {"db": {"url": "postgresql+asyncpg://u:p@h/d"}, "redis": {"cache_url": "redis://h/0"}}


def test_prod_profile_requires_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STAMPEDE_DB__URL", "STAMPEDE_REDIS__CACHE_URL", "STAMPEDE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="STAMPEDE_DB__URL, STAMPEDE_REDIS__CACHE_URL"):
        Settings()


def test_dev_profile_points_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_PROFILE", "dev")
    monkeypatch.delenv("STAMPEDE_DB__URL", raising=False)
    settings = Settings()
    assert settings.database_url == DEV_DATABASE_URL
    assert settings.migration_database_url != settings.database_url  # straight to Postgres


def test_nested_groups_come_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_DB__URL", "postgresql+asyncpg://u:secret@db:6432/app")
    monkeypatch.setenv("STAMPEDE_REDIS__CACHE_URL", "redis://cache:6379/0")
    monkeypatch.setenv("STAMPEDE_DB__POOL_SIZE", "7")
    monkeypatch.setenv("STAMPEDE_SERVER__WORKERS", "3")
    settings = Settings()
    assert settings.db.pool_size == 7
    assert settings.server.workers == 3
    # Without a separate migration URL, migrations use the main one.
    assert settings.migration_database_url == "postgresql+asyncpg://u:secret@db:6432/app"
    assert "secret" not in repr(settings)


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMPEDE_PROFILE", "dev")
    monkeypatch.setenv("STAMPEDE_DB__POOL_SIZE", "0")
    with pytest.raises(ValidationError, match="pool_size"):
        Settings()


def test_the_api_needs_no_broker_but_the_worker_does() -> None:
    settings = Settings(profile="prod", **PROD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="STAMPEDE_BROKER__URL"):
        _ = settings.broker_url
    with pytest.raises(ValueError, match="STAMPEDE_SMTP__HOST"):
        _ = settings.smtp_host
    assert settings.relay.listen_url is None  # no LISTEN: the relay polls


def test_the_defaults_keep_the_delivery_orderings() -> None:
    settings = Settings(profile="prod", **PROD)  # type: ignore[arg-type]
    worker, broker = settings.worker, settings.broker
    assert worker.soft_time_limit_s < worker.time_limit_s < worker.claim_lease_s
    assert worker.time_limit_s + worker.retry_backoff_max_s < broker.visibility_timeout_s
    assert broker.visibility_timeout_s < settings.relay.republish_after_s


@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ({"worker": {"time_limit_s": 90}}, "time_limit_s < claim_lease_s"),
        ({"worker": {"soft_time_limit_s": 50}}, "soft_time_limit_s < time_limit_s"),
        ({"broker": {"visibility_timeout_s": 100}}, "< broker visibility_timeout_s"),
        ({"relay": {"republish_after_s": 60}}, "visibility_timeout_s < relay republish_after_s"),
        ({"smtp": {"timeout_s": 60}}, "smtp timeout < soft_time_limit_s"),
    ],
)
def test_timings_that_would_send_twice_are_refused(
    override: dict[str, dict[str, int]], rule: str
) -> None:
    with pytest.raises(ValueError, match=rule):
        Settings(profile="prod", **PROD, **override)  # type: ignore[arg-type]
