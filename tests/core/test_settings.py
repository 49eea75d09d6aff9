from __future__ import annotations

import pytest

from services.core.settings import Settings

PROD = {"db": {"url": "postgresql+asyncpg://u:p@h/d"}, "redis": {"cache_url": "redis://h/0"}}


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
        ({"broker": {"visibility_timeout_s": 300}}, "< broker visibility_timeout_s"),
        ({"relay": {"republish_after_s": 60}}, "visibility_timeout_s < relay republish_after_s"),
        ({"smtp": {"timeout_s": 60}}, "smtp timeout < soft_time_limit_s"),
    ],
)
def test_timings_that_would_send_twice_are_refused(
    override: dict[str, dict[str, int]], rule: str
) -> None:
    with pytest.raises(ValueError, match=rule):
        Settings(profile="prod", **PROD, **override)  # type: ignore[arg-type]
