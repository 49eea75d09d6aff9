"""``python -m devstack up|down|status``: the local stack (see stack.py)."""

from __future__ import annotations

import argparse
import sys

from devstack import stack
from devstack.servers import ServerError
from devstack.supervision import SupervisorError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        else:
            return stack.status()
    except (stack.StackError, ServerError, SupervisorError) as error:
        print(f"error: {error}", file=sys.stderr)
        if stack.supervisor.is_running():
            print("The stack keeps running for inspection: `make status`, `make down`.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
