"""One row per fault: what the clients saw, what was stored and sent, and the verdict
against the targets (docs/resilience.md)."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from devstack.drill.faults import Window
from devstack.drill.traffic import Kind, Outcome, Traffic

RECOVERY_BOUND_S = 2.0


class Allowance(enum.Enum):
    """Which failed requests a fault may cause without missing its target."""

    NONE = "none"  # the stack hides the fault: every request succeeds
    OUTAGE = "503 while down"  # a 503 problem+json with Retry-After, while it is down
    # Requests the dead or restarting process held: a connection error, or a 503.
    IN_FLIGHT = "in-flight only"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The fault's orders after the pipeline drained."""

    acknowledged: tuple[int, ...]  # order ids answered 201
    stored: tuple[int, ...]  # orders its keys created, acknowledged or not
    emails: Counter[int]  # emails per order number


@dataclass
class Row:
    fault: str
    requests: int
    non_2xx: Counter[int]
    errors: int
    resent: int
    closed_keep_alive: int
    bad_503: int
    cached_failed_while_down: int
    acknowledged: int
    lost: int
    stored: int
    missing_email: int
    duplicate_email: int
    recovery_s: float
    p99_during_ms: float
    p99_after_ms: float
    misses: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "PASS" if not self.misses else "MISS: " + "; ".join(self.misses)


def _p99_ms(outcomes: Sequence[Outcome]) -> float:
    if not outcomes:
        return 0.0
    latencies = sorted(o.latency_s for o in outcomes)
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000


def _failed(outcome: Outcome) -> bool:
    return outcome.error is not None or outcome.status is None or outcome.status >= 300


def row(
    name: str,
    traffic: Traffic,
    window: Window,
    began: float,
    allowance: Allowance,
    delivery: Delivery,
) -> Row:
    injected, back = window.injected - began, window.back - began
    outcomes = traffic.outcomes
    failed = [o for o in outcomes if _failed(o)]
    ends_after_back = [o.started + o.latency_s for o in failed if o.started + o.latency_s > back]
    during = [o for o in outcomes if injected <= o.started < back]
    after = [o for o in outcomes if o.started >= back]
    acknowledged = set(delivery.acknowledged)
    stored = set(delivery.stored)
    result = Row(
        fault=name,
        requests=len(outcomes),
        non_2xx=Counter(o.status for o in outcomes if o.status is not None and o.status >= 300),
        errors=sum(1 for o in outcomes if o.error is not None),
        resent=sum(1 for o in outcomes if o.resent),
        closed_keep_alive=sum(1 for o in outcomes if o.closed_by_server),
        bad_503=sum(
            1 for o in outcomes if o.status == 503 and not (o.retry_after and o.problem_json)
        ),
        cached_failed_while_down=sum(
            1 for o in during if o.kind is Kind.CACHED_LIST and _failed(o)
        ),
        acknowledged=len(acknowledged),
        lost=len(acknowledged - stored),
        stored=len(stored),
        missing_email=sum(1 for order in stored if delivery.emails[order] == 0),
        duplicate_email=sum(1 for order in stored if delivery.emails[order] > 1),
        recovery_s=max(ends_after_back, default=back) - back,
        p99_during_ms=_p99_ms(during),
        p99_after_ms=_p99_ms(after),
    )
    in_flight_until = (window.in_flight_until or window.injected) - began
    late = [o for o in failed if o.started >= in_flight_until]
    result.misses = _misses(result, failed, late, allowance)
    return result


def _misses(
    row: Row, failed: list[Outcome], late: list[Outcome], allowance: Allowance
) -> list[str]:
    misses: list[str] = []
    server_errors = sum(n for status, n in row.non_2xx.items() if status >= 500 and status != 503)
    if server_errors:
        misses.append(f"{server_errors} answers 5xx other than 503")
    if row.bad_503:
        misses.append(f"{row.bad_503} 503s without Retry-After or problem+json")
    if row.closed_keep_alive:
        misses.append(f"server closed {row.closed_keep_alive} keep-alive connections")
    if allowance is Allowance.NONE and failed:
        misses.append(f"{len(failed)} failed requests")
    if allowance is Allowance.IN_FLIGHT and late:
        misses.append(f"{len(late)} failed requests that were not in flight")
    if allowance is Allowance.OUTAGE:
        other = sum(n for status, n in row.non_2xx.items() if status != 503)
        if other:
            misses.append(f"{other} non-2xx answers other than 503")
        if row.errors:
            misses.append(f"{row.errors} connection errors")
    if row.cached_failed_while_down:
        misses.append(f"{row.cached_failed_while_down} cached reads failed during the fault")
    if row.recovery_s > RECOVERY_BOUND_S:
        misses.append(f"recovered {row.recovery_s:.1f}s after the dependency was back")
    if row.lost:
        misses.append(f"{row.lost} acknowledged orders lost")
    if row.missing_email:
        misses.append(f"{row.missing_email} orders without email")
    if row.duplicate_email:
        misses.append(f"{row.duplicate_email} orders emailed twice")
    return misses


HEADER = (
    "| fault | requests | non-2xx | conn errors (resent) | keep-alive closed "
    "| orders 201 → stored | emails missing / twice | back after | p99 during / after "
    "| verdict |"
)


def markdown(rows: Sequence[Row]) -> str:
    lines = [HEADER, "|" + "---|" * 10]
    for r in rows:
        non_2xx = ", ".join(f"{n}x {status}" for status, n in sorted(r.non_2xx.items())) or "0"
        lines.append(
            f"| {r.fault} | {r.requests} | {non_2xx} | {r.errors} ({r.resent}) "
            f"| {r.closed_keep_alive} | {r.acknowledged} → {r.stored} "
            f"| {r.missing_email} / {r.duplicate_email} | {r.recovery_s:.1f} s "
            f"| {r.p99_during_ms:.0f} / {r.p99_after_ms:.0f} ms | {r.verdict} |"
        )
    return "\n".join(lines)
