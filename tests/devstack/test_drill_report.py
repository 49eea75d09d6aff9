"""The drill's verdicts: what each kind of fault may cost, judged from recorded outcomes."""

from __future__ import annotations

from collections import Counter

from devstack.drill.faults import Window
from devstack.drill.report import Allowance, Delivery, Row, markdown, row
from devstack.drill.traffic import Kind, Outcome, Traffic

BEGAN = 100.0
# The fault strikes 3 s in; its dependency is back at 8 s.
WINDOW = Window(injected=BEGAN + 3, back=BEGAN + 8)


def ok(kind: Kind, at: float, order_id: int | None = None) -> Outcome:
    status = 201 if kind is Kind.ORDER else 200
    return Outcome(kind, at, 0.01, status=status, order_id=order_id)


def unavailable(kind: Kind, at: float, *, retry_after: bool = True) -> Outcome:
    return Outcome(kind, at, 0.01, status=503, retry_after=retry_after, problem_json=True)


def judge(
    outcomes: list[Outcome],
    allowance: Allowance,
    *,
    stored: tuple[int, ...] = (),
    emails: Counter[int] | None = None,
    window: Window = WINDOW,
) -> Row:
    acknowledged = tuple(o.order_id for o in outcomes if o.order_id is not None)
    return row(
        "fault",
        Traffic(outcomes=outcomes),
        window,
        BEGAN,
        allowance,
        Delivery(acknowledged, stored or acknowledged, emails or Counter(acknowledged)),
    )


def test_a_fault_the_stack_hides_passes_only_without_a_failure() -> None:
    clean = [ok(Kind.CACHED_LIST, t) for t in range(10)]
    assert judge(clean, Allowance.NONE).verdict == "PASS"
    failed = judge([*clean, unavailable(Kind.USER, 4)], Allowance.NONE)
    assert failed.misses == ["1 failed requests"]


def test_an_outage_may_answer_503_with_retry_after_but_never_500() -> None:
    outage = [ok(Kind.CACHED_LIST, 1), unavailable(Kind.USER, 4), ok(Kind.USER, 9)]
    assert judge(outage, Allowance.OUTAGE).verdict == "PASS"
    bare = judge([unavailable(Kind.USER, 4, retry_after=False)], Allowance.OUTAGE)
    assert "1 503s without Retry-After or problem+json" in bare.misses
    crashed = judge([Outcome(Kind.ORDER, 4, 0.01, status=500)], Allowance.OUTAGE)
    assert "1 answers 5xx other than 503" in crashed.misses


def test_cached_reads_must_keep_answering_while_the_database_is_down() -> None:
    judged = judge([unavailable(Kind.CACHED_LIST, 5)], Allowance.OUTAGE)
    assert "1 cached reads failed during the fault" in judged.misses


def test_recovery_counts_from_the_dependency_being_back() -> None:
    # Back at 8 s; the last failure ends at 9.51 s: 1.5 s, within the bound.
    quick = judge([unavailable(Kind.USER, 9.5), ok(Kind.USER, 10)], Allowance.OUTAGE)
    assert round(quick.recovery_s, 2) == 1.51
    assert quick.verdict == "PASS"
    slow = judge([unavailable(Kind.USER, 11)], Allowance.OUTAGE)
    assert slow.misses == ["recovered 3.0s after the dependency was back"]


def test_only_requests_in_flight_may_fail_when_a_process_dies() -> None:
    window = Window(injected=BEGAN + 3, back=BEGAN + 3.5, in_flight_until=BEGAN + 3.2)
    in_flight = Outcome(Kind.USER, 3.1, 0.2, error="ConnectionResetError")
    assert judge([in_flight], Allowance.IN_FLIGHT, window=window).verdict == "PASS"
    late = Outcome(Kind.USER, 3.3, 0.01, error="refused")
    judged = judge([in_flight, late], Allowance.IN_FLIGHT, window=window)
    assert judged.misses == ["1 failed requests that were not in flight"]


def test_a_closed_keep_alive_connection_is_a_miss_even_after_a_success() -> None:
    closed = ok(Kind.USER, 1)
    closed.closed_by_server = True
    assert judge([closed], Allowance.NONE).misses == ["server closed 1 keep-alive connections"]


def test_every_acknowledged_order_is_stored_and_emailed_exactly_once() -> None:
    orders = [ok(Kind.ORDER, 1, order_id=7), ok(Kind.ORDER, 2, order_id=8)]
    assert judge(orders, Allowance.NONE).verdict == "PASS"
    lost = judge(orders, Allowance.NONE, stored=(7,), emails=Counter({7: 1}))
    assert lost.misses == ["1 acknowledged orders lost"]
    twice = judge(orders, Allowance.NONE, emails=Counter({7: 2}))
    assert twice.misses == ["1 orders without email", "1 orders emailed twice"]


def test_the_table_has_a_row_per_fault_with_its_verdict() -> None:
    judged = judge([unavailable(Kind.USER, 4)], Allowance.OUTAGE)
    table = markdown([judged]).splitlines()
    assert len(table) == 3
    assert table[2].startswith("| fault | 1 | 1x 503 |")
    assert table[2].endswith("| PASS |")
