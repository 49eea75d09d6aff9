"""``python -m services.api.keys create | list | revoke``: manage API keys.

Runs wherever the api runs (the same settings: ``STAMPEDE_DB__URL``,
``STAMPEDE_REDIS__CACHE_URL``, ``STAMPEDE_AUTH__HMAC_KEY``), e.g. ``kubectl exec`` into
an api pod. ``create`` prints the token once: only its HMAC is stored. ``revoke``
broadcasts the revocation over the cache's invalidation channel, so every api process
refuses the key within milliseconds; if Redis cannot be reached it says so, and the
processes stop trusting the key within ``auth.key_cache_ttl_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError

from services.core.api_keys import ALL_SCOPES, Scope, create_key, key_tag, list_keys, revoke_key
from services.core.cache.invalidation import invalidate_now
from services.core.db import create_engine, create_session_factory
from services.core.settings import Settings

log = logging.getLogger("stampede.auth")


def broadcast(settings: Settings, prefix: str) -> bool:
    """Tell every api process to forget what it knows of ``prefix``."""
    client = Redis.from_url(settings.cache_redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        invalidate_now(
            client,
            namespace=settings.cache.namespace,
            marker_ttl_s=settings.cache.tag_marker_ttl_s,
            tags=[key_tag(prefix)],
        )
    except (RedisError, OSError) as error:
        log.warning("could not broadcast to the api processes: %r", error)
        return False
    finally:
        client.close()
    return True


async def create(
    settings: Settings,
    *,
    name: str,
    scopes: Sequence[Scope],
    expires_at: datetime | None = None,
) -> str:
    """A new key's token (shown once, never stored)."""
    engine = create_engine(settings.database_url, settings.db)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            token, key = await create_key(
                session, settings.api_key_secret, name=name, scopes=scopes, expires_at=expires_at
            )
            prefix = key.prefix
    finally:
        await engine.dispose()
    # A process may remember the prefix as unknown (auth.unknown_key_ttl_s).
    broadcast(settings, prefix)
    return token


async def _list(settings: Settings) -> None:
    engine = create_engine(settings.database_url, settings.db)
    try:
        async with create_session_factory(engine)() as session:
            keys = await list_keys(session)
    finally:
        await engine.dispose()
    print(
        "prefix        state     expires                    last used                  scopes  name"
    )
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        if state == "active" and key.expires_at and key.expires_at <= datetime.now(UTC):
            state = "expired"
        print(
            f"{key.prefix}  {state:8}  {_when(key.expires_at):25}  {_when(key.last_used_at):25}"
            f"  {','.join(key.scopes)}  {key.name}"
        )


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


async def _revoke(settings: Settings, prefix: str) -> bool:
    engine = create_engine(settings.database_url, settings.db)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            revoked = await revoke_key(session, prefix)
    finally:
        await engine.dispose()
    if revoked and not broadcast(settings, prefix):
        print(
            f"revoked, but not broadcast: api processes refuse it within "
            f"{settings.auth.key_cache_ttl_s:g} s",
            file=sys.stderr,
        )
    return revoked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api.keys")
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("create", help="create a key and print its token (shown once)")
    new.add_argument("--name", required=True, help="who or what the key is for")
    new.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        choices=[s.value for s in ALL_SCOPES],
        required=True,
        help="repeat for several; `admin` grants every scope",
    )
    new.add_argument("--expires-in-days", type=float, help="default: never")
    sub.add_parser("list", help="list the keys (prefixes, never tokens)")
    gone = sub.add_parser("revoke", help="revoke a key by its prefix")
    gone.add_argument("prefix")
    args = parser.parse_args(argv)

    settings = Settings()
    if args.action == "create":
        expires_at = None
        if args.expires_in_days is not None:
            expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
        scopes = [Scope(s) for s in args.scopes]
        print(asyncio.run(create(settings, name=args.name, scopes=scopes, expires_at=expires_at)))
    elif args.action == "list":
        asyncio.run(_list(settings))
    elif not asyncio.run(_revoke(settings, args.prefix)):
        print(f"no active key with prefix {args.prefix!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
