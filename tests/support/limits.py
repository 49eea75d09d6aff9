"""Rate limits for tests that are not about them: the limiter runs (its code is on every
request of the suite) but admits everything, as many tests send hundreds of requests
at once from one address with one key."""

from __future__ import annotations

UNLIMITED = {
    "key_rate_per_s": 1e6,
    "key_burst": 1_000_000,
    "anonymous_rate_per_s": 1e6,
    "anonymous_burst": 1_000_000,
}
UNLIMITED_ENV = {
    f"STAMPEDE_RATE_LIMIT__{name.upper()}": str(value) for name, value in UNLIMITED.items()
}
