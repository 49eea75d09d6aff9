"""API keys: tokens, their storage, and each process's cache of them.

A token is ``stk_<prefix>_<secret>``: 12 random hex characters that name the key in
logs, lists and the database (public), then 32 random bytes. Only an HMAC-SHA256 of the
whole token under the server's secret (``auth.hmac_key``) is stored, so neither the
table nor a backup of it lets anyone call the API, and a guessed prefix is worthless.
A request's key is found by its prefix and compared in constant time.

:class:`KeyRing` keeps what it looked up, per process, so a request costs one HMAC and
a dict lookup, no query. A revocation reaches every process over the response cache's
invalidation channel as the tag :func:`key_tag` (milliseconds); the ring also forgets
everything when that channel reconnects, and trusts an entry at most
``auth.key_cache_ttl_s``. Expiry is checked on every request. ``last_used_at`` is kept
in memory and written in one statement per process every ``auth.last_used_flush_s``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from services.core.errors import InsufficientScope, InvalidApiKey
from services.core.models import ApiKey

log = logging.getLogger("stampede.auth")


class Scope(enum.StrEnum):
    CATALOG_WRITE = "catalog:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    # Every other scope, and those added later.
    ADMIN = "admin"


ALL_SCOPES = tuple(Scope)

_TOKEN = re.compile(r"stk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
TAG_PREFIX = "api-key:"


def key_tag(prefix: str) -> str:
    """The invalidation tag that makes every process forget the key ``prefix``."""
    return TAG_PREFIX + prefix


def new_token() -> tuple[str, str]:
    """A fresh ``(token, prefix)``."""
    prefix = secrets.token_hex(6)
    return f"stk_{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_prefix(token: str) -> str | None:
    """The prefix of something shaped like one of our tokens, else None."""
    found = _TOKEN.fullmatch(token)
    return found.group(1) if found else None


def digest(secret: bytes, token: str) -> bytes:
    return hmac.new(secret, token.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the key's prefix and what it may do."""

    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


# Storage. Services flush; the caller's unit of work commits.


async def create_key(
    session: AsyncSession,
    secret: bytes,
    *,
    name: str,
    scopes: Iterable[Scope],
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key; the token is returned once and never stored."""
    token, prefix = new_token()
    key = ApiKey(
        prefix=prefix,
        digest=digest(secret, token),
        name=name,
        scopes=sorted({Scope(s).value for s in scopes}),
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return token, key


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).order_by(ApiKey.id))).all()


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    """Revoke ``prefix``; False when there is no such key (or it was revoked already)."""
    statement = (
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiKey.id)
    )
    return (await session.scalars(statement)).first() is not None


_BY_PREFIX = select(ApiKey.digest, ApiKey.scopes, ApiKey.expires_at, ApiKey.revoked_at).where(
    ApiKey.prefix == bindparam("prefix")
)


async def _load(
    connection: AsyncConnection, prefix: str
) -> Row[bytes, list[str], datetime | None, datetime | None] | None:
    return (await connection.execute(_BY_PREFIX, {"prefix": prefix})).first()


@dataclass(frozen=True, slots=True)
class _Known:
    digest: bytes
    principal: Principal
    expires_at: float | None  # epoch seconds
    revoked: bool
    loaded_at: float  # monotonic


class KeyRing:
    """This process's view of the keys (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        secret: bytes,
        *,
        ttl_s: float,
        max_entries: int,
        unknown_ttl_s: float,
    ) -> None:
        self._engine = engine
        self._secret = secret
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._unknown_ttl_s = unknown_ttl_s
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._used: dict[str, datetime] = {}

    async def authenticate(self, token: str) -> Principal:
        """The key's principal; raises ``InvalidApiKey`` for anything that is not a live
        key of ours. Database trouble propagates (the caller answers 503)."""
        prefix = token_prefix(token)
        if prefix is None:
            raise InvalidApiKey("The API key is malformed.")
        known = await self._lookup(prefix)
        # The HMAC is computed and compared even for an unknown prefix, so the time an
        # answer takes does not tell which prefixes exist.
        expected = known.digest if known is not None else bytes(32)
        if not hmac.compare_digest(digest(self._secret, token), expected) or known is None:
            raise InvalidApiKey("The API key is not valid.")
        if known.revoked:
            raise InvalidApiKey("The API key was revoked.")
        if known.expires_at is not None and time.time() >= known.expires_at:
            raise InvalidApiKey("The API key has expired.")
        self._used[prefix] = datetime.now(UTC)
        return known.principal

    @staticmethod
    def authorize(principal: Principal, scope: str) -> None:
        if not principal.allows(scope):
            raise InsufficientScope(f"This API key lacks the scope {scope!r}.", scope=scope)

    async def _lookup(self, prefix: str) -> _Known | None:
        now = time.monotonic()
        known = self._known.get(prefix)
        if known is not None and now - known.loaded_at < self._ttl_s:
            self._known.move_to_end(prefix)
            return known
        unknown_since = self._unknown.get(prefix)
        if unknown_since is not None and now - unknown_since < self._unknown_ttl_s:
            return None
        async with self._engine.connect() as connection:
            row = await _load(connection, prefix)
        if row is None:
            self._remember_unknown(prefix, now)
            return None
        key_digest, scopes, expires_at, revoked_at = row
        known = _Known(
            digest=key_digest,
            principal=Principal(prefix, frozenset(scopes)),
            expires_at=expires_at.timestamp() if expires_at is not None else None,
            revoked=revoked_at is not None,
            loaded_at=now,
        )
        self._known[prefix] = known
        self._known.move_to_end(prefix)
        while len(self._known) > self._max_entries:
            self._known.popitem(last=False)
        return known

    def _remember_unknown(self, prefix: str, now: float) -> None:
        if self._unknown_ttl_s <= 0:
            return
        self._unknown[prefix] = now
        self._unknown.move_to_end(prefix)
        while len(self._unknown) > self._max_entries:
            self._unknown.popitem(last=False)

    def drop_tags(self, tags: Iterable[str]) -> None:
        """Apply broadcast invalidations: forget the keys they name."""
        for tag in tags:
            if tag.startswith(TAG_PREFIX):
                prefix = tag[len(TAG_PREFIX) :]
                self._known.pop(prefix, None)
                self._unknown.pop(prefix, None)

    def clear(self) -> None:
        """Forget every key (invalidations may have been missed)."""
        self._known.clear()
        self._unknown.clear()

    async def flush_last_used(self) -> None:
        """Write the buffered ``last_used_at`` values in one statement."""
        if not self._used:
            return
        used, self._used = self._used, {}
        statement = (
            update(ApiKey)
            .where(ApiKey.prefix == bindparam("key_prefix"))
            .values(last_used_at=bindparam("used_at"))
        )
        rows = [{"key_prefix": prefix, "used_at": at} for prefix, at in used.items()]
        try:
            async with self._engine.begin() as connection:
                await connection.execute(statement, rows)
        except Exception as error:
            # Bookkeeping only: never worth failing for, and the next flush tries again.
            log.warning("could not record API key use: %r", error)
            for prefix, at in used.items():
                self._used.setdefault(prefix, at)
