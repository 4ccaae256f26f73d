"""The pure parts of the report and the A/B tests: arm assignment, statistics, attribution edges,
refunds, costs. Figures are computed by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.experiments import (
    assign,
    parse_arms,
    two_proportions,
    wilson_interval,
)
from outreach_cli.domain.report import (
    Costs,
    Options,
    OptOutRow,
    PaymentRow,
    Report,
    ReportInput,
    SendRow,
    SetRow,
    parse_by,
)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# --- assignment ------------------------------------------------------------------------------


def test_assignment_within_two_percent_of_weights_over_10000_sets() -> None:
    arms = parse_arms("standard:70,gentle:30")
    counts = {"standard": 0, "gentle": 0}
    for sid in range(1, 10_001):
        counts[assign(sid, arms)] += 1
    assert abs(counts["standard"] / 10_000 - 0.70) < 0.02
    assert abs(counts["gentle"] / 10_000 - 0.30) < 0.02
    three = parse_arms("a:1,b:1,c:2")
    c3 = {"a": 0, "b": 0, "c": 0}
    for sid in range(50_001, 60_001):
        c3[assign(sid, three)] += 1
    assert [abs(c3[k] / 10_000 - w) < 0.02 for k, w in (("a", 0.25), ("b", 0.25), ("c", 0.5))] == [True] * 3


def test_assignment_depends_only_on_the_set_id() -> None:
    arms = parse_arms("standard:50,gentle:50")
    first = [assign(sid, arms) for sid in range(1, 200)]
    assert first == [assign(sid, parse_arms(" standard:50 , gentle:50 ")) for sid in range(1, 200)]
    assert assign(7, parse_arms("standard")) == "standard"


def test_parse_arms() -> None:
    assert parse_arms("standard").arms == (("standard", 1),) and not parse_arms("standard").is_experiment
    a = parse_arms("standard:70, gentle:30")
    assert a.arms == (("standard", 70), ("gentle", 30)) and a.spec == "standard:70,gentle:30"
    for bad in ("", "a:0,b:1", "a:x", "a:1,a:2", "a:1,", ":3", "a:1.5"):
        with pytest.raises(InvalidInput):
            parse_arms(bad)


# --- statistics ------------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(5, 10) or (0, 0)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 20) or (0, 0)
    assert round(lo, 9) == 0.0 and round(hi, 4) == 0.1611
    assert wilson_interval(0, 0) is None


def test_two_proportion_z_test() -> None:
    # 60/100 vs 40/100: pooled p 0.5, se sqrt(0.25 * 0.02) = 0.0707, z = 2.828, p = 0.00468.
    c = two_proportions(60, 100, 40, 100)
    assert round(c.difference, 3) == 0.2 and round(c.z or 0, 3) == 2.828
    assert round(c.p_value or 0, 5) == 0.00468 and c.enough
    # unpooled interval: 0.2 +- 1.96 * sqrt(.24/100 + .24/100) = 0.2 +- 0.1358
    assert (round(c.ci[0], 4), round(c.ci[1], 4)) == (0.0642, 0.3358)
    small = two_proportions(3, 10, 1, 10)
    assert not small.enough and "fewer than 30 sets" in (small.why_not or "")
    rare = two_proportions(1, 100, 2, 100)
    assert not rare.enough and "expected" in (rare.why_not or "")


# --- report figures --------------------------------------------------------------------------


def _opts(**kw: object) -> Options:
    base: dict[str, object] = {"since": T0 - 10 * DAY, "until": T0 + 60 * DAY, "tz": ZoneInfo("UTC")}
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


def _send(sid: int, at: datetime, method: str = "sms", status: str = "delivered", day: int = 0) -> SendRow:
    return SendRow(sid, day, f"Step {day}", method, status, 1, at)


def test_attribution_window_edges() -> None:
    sets = [SetRow(i, "rs", "active", T0, 10_000) for i in range(1, 6)]
    sends = [_send(i, T0) for i in range(1, 6)]
    payments = [
        PaymentRow(1, "p1", T0 + 7 * DAY, 1000),  # exactly 7 days later: inside (inclusive)
        PaymentRow(2, "p2", T0 + 7 * DAY + timedelta(microseconds=1), 1000),  # just outside
        PaymentRow(3, "p3", T0, 1000),  # same instant as the send: inside
        PaymentRow(4, "p4", T0 - timedelta(seconds=1), 1000),  # before any send
    ]
    r = Report(ReportInput(sets, sends, payments, []), _opts(by=("step",)))
    rows = {g["step"]: g for g in r.group_rows(("step",))}
    assert rows["Step 0"]["collected_cents"] == 2000
    assert rows["(unprompted)"]["collected_cents"] == 2000
    r0 = Report(ReportInput(sets, sends, payments, []), _opts(attribution_days=0))
    rows0 = {g["step"]: g for g in r0.group_rows(("step",))}
    assert rows0["Step 0"]["collected_cents"] == 1000  # only the same-instant payment


def test_failed_and_sent_sends_do_not_earn_credit() -> None:
    sets = [SetRow(1, "rs", "active", T0, 5000)]
    sends = [_send(1, T0, "sms", "failed"), _send(1, T0 + DAY, "email", "sent")]
    r = Report(ReportInput(sets, sends, [PaymentRow(1, "p", T0 + 2 * DAY, 5000)], []), _opts())
    (g,) = r.group_rows(("method",))[-1:]
    assert g["method"] == "(unprompted)" and g["collected_cents"] == 5000 and g["sets_paid_full"] == 1


def test_refunds_take_back_the_latest_payments_and_partial_payments() -> None:
    sets = [SetRow(1, "rs", "active", T0, 10_000), SetRow(2, "rs", "paid", T0, 4000)]
    sends = [_send(1, T0), _send(1, T0 + 20 * DAY, "email", day=20)]
    payments = [
        PaymentRow(1, "a", T0 + DAY, 3000),  # Step 0
        PaymentRow(1, "b", T0 + 21 * DAY, 7000),  # Step 20: paid in full...
        PaymentRow(1, "r", T0 + 22 * DAY, -2000),  # ...until a refund takes $20 of it back
        PaymentRow(2, "c", T0 + 2 * DAY, 4000),  # set 2: paid in full
    ]
    r = Report(ReportInput(sets, sends, payments, []), _opts())
    rows = {g["step"]: g for g in r.group_rows(("step",))}
    assert rows["Step 0"]["collected_cents"] == 3000
    assert rows["(unprompted)"]["collected_cents"] == 4000  # set 2 had no send
    assert rows["Step 20"]["collected_cents"] == 5000
    assert (rows["Step 20"]["sets_paid_full"], rows["Step 20"]["sets_paid_partly"]) == (0, 1)
    total = r.as_dict()["total"]
    assert (total["collected_cents"], total["sets_paid_full"], total["sets_paid_partly"]) == (12_000, 1, 1)
    assert total["collection_rate"] == 12_000 / 14_000


def test_costs_calls_by_minute_and_ratio() -> None:
    costs = Costs(sms=Decimal("0.0079"), email=Decimal("0.001"), call_minute=Decimal("0.02"), letter=Decimal("0.85"))
    sets = [SetRow(1, "rs", "active", T0, 100_000)]
    sends = [
        _send(1, T0, "sms"),
        _send(1, T0, "sms", "failed"),
        _send(1, T0, "email"),
        SendRow(1, 0, "Step 0", "call", "delivered", 1, T0),  # no duration: one minute
        SendRow(1, 0, "Step 0", "call", "delivered", 1, T0, minutes=3.5),
        _send(1, T0, "mail"),
        _send(1, T0, "sms", "skipped"),  # skipped: not attempted, costs nothing
    ]
    r = Report(ReportInput(sets, sends, [PaymentRow(1, "p", T0 + DAY, 10_000)], []), _opts(costs=costs))
    total = r.as_dict()["total"]
    # 2 x 0.0079 + 0.001 + 0.02 + 3.5 x 0.02 + 0.85 = 0.9568 dollars -> 96 cents
    assert total["cost_cents"] == 96 and total["cost"] == "0.96"
    assert total["collected_per_dollar"] == round(10_000 / 96, 2)
    assert total["messages_attempted"] == 6 and total["messages"]["sms"] == {
        "attempted": 2,
        "delivered": 1,
        "failed": 1,
    }


def test_opt_outs_attributed_to_the_send_of_their_channel() -> None:
    sets = [SetRow(1, "rs", "active", T0, 100)]
    sends = [_send(1, T0), _send(1, T0 + 2 * DAY, "email", day=2)]
    outs = [
        OptOutRow(1, T0 + 3 * DAY, "reply"),  # STOP answers the text of day 0, not the later email
        OptOutRow(1, T0 + 3 * DAY, "email_complaint"),  # answers the email of day 2
        OptOutRow(1, T0 + 30 * DAY, "email_unsubscribe"),  # no email in the 7 days before
    ]
    rows = {g["step"]: g for g in Report(ReportInput(sets, sends, [], outs), _opts()).group_rows(("step",))}
    assert [rows[k]["opt_outs"] for k in ("Step 0", "Step 2", "(unprompted)")] == [1, 1, 1]


def test_week_grouping_uses_the_practice_time_zone() -> None:
    ny = ZoneInfo("America/New_York")
    # Monday 2026-03-02 03:00Z is still Sunday 22:00 in New York: the week of 2026-02-23.
    sets = [SetRow(1, "rs", "active", datetime(2026, 3, 2, 3, 0, tzinfo=UTC), 100)]
    rows = Report(ReportInput(sets, [], [], []), _opts(tz=ny)).group_rows(("week",))
    assert rows[0]["week"] == "2026-02-23"


def test_parse_by() -> None:
    assert parse_by(None) == ("rule-set", "step")
    assert parse_by(["week", "rule_set,method"]) == ("week", "rule-set", "method")
    with pytest.raises(InvalidInput):
        parse_by(["patient"])
