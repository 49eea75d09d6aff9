"""``python -m services.worker.deadletters list | retry ID... | retry --all``.

Dead letters are outbox rows whose task gave up (retries exhausted, or a permanent error
such as a vanished order or an SMTP 5xx). ``retry`` puts them back in line for the relay
and the order's confirmation back to ``pending``; the idempotency guard still holds, so
retrying a letter whose email did go out sends nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from services.core.db import create_sync_engine
from services.core.settings import Settings
from services.worker import outbox_lifecycle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.worker.deadletters")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="show dead letters (JSON, one a line)")
    listing.add_argument("--limit", type=int, default=100)
    retry = sub.add_parser("retry", help="publish dead letters again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID")
    which.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)

    settings = Settings()
    engine = create_sync_engine(settings.database_url, settings.db, pool_size=1)
    try:
        with engine.begin() as conn:
            if args.action == "list":
                for letter in outbox_lifecycle.list_dead(conn, args.limit):
                    row = {
                        "id": letter.id,
                        "task": letter.task,
                        "payload": letter.payload,
                        "created_at": letter.created_at.isoformat(),
                        "dead_at": letter.dead_at.isoformat(),
                        "publish_count": letter.publish_count,
                        "last_error": letter.last_error,
                    }
                    print(json.dumps(row))
                return 0
            if not args.all and not args.ids:
                parser.error("name the dead letters to retry, or --all")
            retried = outbox_lifecycle.retry_dead(conn, None if args.all else args.ids)
    finally:
        engine.dispose()
    print(f"requeued {len(retried)} dead letter(s): {' '.join(map(str, retried))}")
    missing = sorted(set(args.ids) - set(retried))
    if missing:
        print(f"not dead letters: {' '.join(map(str, missing))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
