"""``python -m services.migrations upgrade [REV] | downgrade REV | current``."""

from __future__ import annotations

import argparse

from services.migrations import runner


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.migrations")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="apply migrations (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="revert migrations to REVISION")
    down.add_argument("revision")
    sub.add_parser("current", help="show the database's revision")
    args = parser.parse_args()

    url = runner.default_url()
    if args.action == "upgrade":
        runner.upgrade(url, args.revision)
    elif args.action == "downgrade":
        runner.downgrade(url, args.revision)
    else:
        runner.current(url)


if __name__ == "__main__":
    main()
