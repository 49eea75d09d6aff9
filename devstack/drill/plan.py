"""The drill's faults, in the order they run, and what each may cost."""

from __future__ import annotations

from dataclasses import dataclass

from devstack.drill import faults
from devstack.drill.report import Allowance


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # shown with how long the fault lasts in this run
    fault: faults.Fault
    hold_s: float  # how long the fault lasts in the full drill
    short_hold_s: float | None  # in the short (CI) drill; None: left out of it
    allowance: Allowance

    def title(self, hold_s: float) -> str:
        return f"{self.name} {hold_s:g} s" if hold_s else self.name


SCENARIOS = (
    Scenario("cache Redis down", faults.stopped("redis-cache"), 10, 4, Allowance.NONE),
    Scenario("broker Redis down", faults.stopped("redis-broker"), 10, 4, Allowance.NONE),
    Scenario("Postgres down", faults.stopped("postgres"), 5, 5, Allowance.OUTAGE),
    Scenario("Postgres down", faults.stopped("postgres"), 60, None, Allowance.OUTAGE),
    Scenario("PgBouncer restarted", faults.pgbouncer_restarted, 0, 0, Allowance.IN_FLIGHT),
    Scenario("PgBouncer paused", faults.pgbouncer_paused, 3, 3, Allowance.NONE),
    Scenario("api worker kill -9", faults.api_worker_killed, 0, 0, Allowance.IN_FLIGHT),
    Scenario("Celery child kill -9 mid-send", faults.worker_killed_mid_send, 0, 0, Allowance.NONE),
    Scenario(
        "Celery worker kill -9, all processes",
        faults.worker_killed_whole,
        0,
        None,
        Allowance.NONE,
    ),
    Scenario("relay kill -9", faults.relay_killed, 0, 0, Allowance.NONE),
    Scenario("SMTP down", faults.stopped("mail-sink"), 30, 5, Allowance.NONE),
    Scenario("hot rows locked", faults.rows_locked, 5, 5, Allowance.OUTAGE),
)
