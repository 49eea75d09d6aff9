from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.settings import DEV_DATABASE_URL, Settings


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
