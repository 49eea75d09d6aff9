"""A monitored stack as the dashboard tests see it: the api, Prometheus and the SMTP server."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.support.gunicorn import Gunicorn
from tests.support.smtp import SmtpServer


@dataclass(frozen=True)
class Monitored:
    api: Gunicorn
    prometheus_url: str
    smtp: SmtpServer

    def query(self, expr: str) -> list[dict[str, object]]:
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def label_values(self, label: str, selector: str) -> list[str]:
        response = httpx.get(
            f"{self.prometheus_url}/api/v1/label/{label}/values", params={"match[]": selector}
        )
        values: list[str] = response.json()["data"]
        return values
