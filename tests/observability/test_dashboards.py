"""Dashboards: well-formed for provisioning, and every panel's query returns data from a
real Prometheus scraping the real processes under load."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.keys import bearer
from tests.support.monitoring import Monitored

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "grafana" / "dashboards").glob("*.json"))
# Grafana's interval macros, resolved as Grafana would for a short, densely scraped range.
MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found += panel.get("panels", [])
        if panel["type"] != "row":
            found.append(panel)
    return found


def test_the_expected_dashboards_exist() -> None:
    uids = {load(path)["uid"] for path in DASHBOARDS}
    expected = {"overview", "api", "database", "cache", "worker"}
    assert {f"stampede-{name}" for name in expected} <= uids
    assert len(uids) == len(DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_provisionable(path: Path) -> None:
    text = path.read_text()
    board = load(path)
    assert "__inputs" not in board
    assert "${DS_" not in text
    assert board["uid"].startswith("stampede-")
    assert board.get("id") is None
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def resolve_variables(board: dict[str, Any], monitored: Monitored) -> dict[str, str]:
    """Resolve query variables in order, as Grafana does, taking each one's first value."""
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        for name, value in values.items():
            query = query.replace(f"${name}", value)
        match = LABEL_VALUES.match(query)
        assert match, query
        options = monitored.label_values(match["label"], match["selector"])
        assert options, f"variable {variable['name']} has no values: {query}"
        values[variable["name"]] = sorted(options)[0]
    return values


def substitute(expr: str, variables: dict[str, str]) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


async def drive_load(base_url: str, seconds: float, token: str) -> None:
    """Successes, client errors and writes, long enough for several scrapes."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=bearer(token)) as client:
        user = (await client.post("/users", json={"email": "obs@example.com", "name": "O"})).json()
        product = (
            await client.post(
                "/products",
                json={"name": "Probe", "category": "cat0", "price_cents": 100, "stock": 10**6},
            )
        ).json()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.gather(
                client.get(f"/users/{user['id']}"),
                client.get("/products", params={"category": "cat0"}),
                client.get(f"/products/{product['id']}"),
                client.get("/users/999999"),  # 404
                client.post("/orders", json={"user_id": user["id"], "items": []}),  # 422
                client.post(
                    "/orders",
                    json={
                        "user_id": user["id"],
                        "items": [{"product_id": product["id"], "quantity": 1}],
                    },
                ),
                client.get(f"/users/{user['id']}/orders"),
            )


async def test_every_panel_query_returns_data(
    monitored: Monitored, clean_database: None, api_token: str
) -> None:
    await drive_load(monitored.api.base_url, seconds=8, token=api_token)
    await asyncio.sleep(3)  # the last samples reach Prometheus

    empty: list[str] = []
    for path in DASHBOARDS:
        board = load(path)
        variables = resolve_variables(board, monitored)
        assert variables == {"namespace": "local", "release": "stampede"}
        for panel in panels(board):
            for target in panel["targets"]:
                expr = substitute(target["expr"], variables)
                if not monitored.query(expr):
                    empty.append(f"{board['uid']} / {panel['title']} / {target['refId']}: {expr}")
    assert empty == [], "\n".join(empty)
