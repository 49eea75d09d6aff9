"""``python -m services.operator``: the kopf operator in a cluster, or with
``--budget-file PATH`` the same reconcile against the local stack."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from prometheus_client import start_http_server

from services.operator.in_cluster import run_in_cluster
from services.operator.settings import OperatorSettings
from services.operator.standalone import run_standalone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.operator", description=__doc__)
    parser.add_argument("--budget-file", type=Path, help="reconcile this file, no Kubernetes")
    parser.add_argument("--status-file", type=Path, help="with --budget-file: write the status")
    args = parser.parse_args(argv)
    settings = OperatorSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    start_http_server(settings.metrics_port, settings.metrics_addr)
    if args.budget_file is not None:
        asyncio.run(run_standalone(args.budget_file, settings.retry_interval_s, args.status_file))
    else:
        asyncio.run(run_in_cluster(settings))


if __name__ == "__main__":
    main()
