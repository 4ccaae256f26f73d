"""`plan_step`: the per-step send decision, case by case with a fixed clock, and the quiet-hours
and one-per-channel-per-day rules as a property across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_cli.domain.caps import ContactUsage
from outreach_cli.domain.rulesets import Step
from outreach_cli.domain.scheduling import Window
from outreach_cli.outreach.plan import Claim, Defer, PlanPatient, PlanSet, Skip, plan_step

NY = "America/New_York"
MON_10_NY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
W = Window()  # 09:00-17:00, no weekends
ALL_USABLE: dict[str, str | None] = {"sms": None, "email": None, "call": None, "mail": None, "charge_card": None}
NO_CAPS: dict[str, Any] = {"calls_per_7_days": None, "messages_per_7_days": None, "states": {}}


def step(*methods: str, min_cents: int | None = None, max_cents: int | None = None) -> Step:
    return Step(0, 0, tuple(methods), "Reminder", "Hi {first_name}", min_cents, max_cents)


def patient(zones: tuple[str, ...] = (NY,), **unusable: str) -> PlanPatient:
    return PlanPatient(1, "+12125550123", "a@example.com", "NY", zones, {**ALL_USABLE, **unusable})


def ny(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(NY)).astimezone(UTC)


def used(*sends: tuple[str, str]) -> ContactUsage:
    """Usage with ``(method, local day)`` already sent to the patient above."""
    u = ContactUsage(NO_CAPS)
    for method, day in sends:
        u.record(1, "+12125550123", "a@example.com", method, day, MON_10_NY - timedelta(hours=1))
    return u


SET = PlanSet(7, 25_000)

CASES = [
    pytest.param(
        SET, patient(), step("sms"), MON_10_NY, W, used(), Claim(("sms",), (), "2026-03-02"), id="inside-window-claims"
    ),
    pytest.param(
        SET, patient(), step("sms"), ny(2026, 3, 2, 7), W, used(), Defer(ny(2026, 3, 2, 9)), id="before-window-defers"
    ),
    pytest.param(
        SET,
        patient(),
        step("sms"),
        ny(2026, 3, 6, 18),
        W,
        used(),
        Defer(ny(2026, 3, 9, 9)),
        id="friday-evening-to-monday",
    ),
    pytest.param(
        SET,
        patient((NY, "Asia/Tokyo")),
        step("sms"),
        MON_10_NY,
        W,
        used(),
        Defer(None),
        id="no-common-window",
    ),
    pytest.param(
        PlanSet(7, 5_000),
        patient(),
        step("sms", "email", min_cents=10_000),
        MON_10_NY,
        W,
        used(),
        Skip("balance $50.00 is outside this step's min/max balance"),
        id="below-min-balance-skips",
    ),
    pytest.param(
        PlanSet(7, 5_000),
        patient(),
        step("sms", min_cents=10_000),
        ny(2026, 3, 2, 7),
        W,
        used(),
        Defer(ny(2026, 3, 2, 9)),
        id="window-decided-before-balance",
    ),
    pytest.param(
        SET,
        patient(email="no email address"),
        step("sms", "email"),
        MON_10_NY,
        W,
        used(),
        Claim(("sms",), (("email", "no email address"),), "2026-03-02"),
        id="unusable-method-skipped",
    ),
    pytest.param(
        SET,
        patient(sms="patient opted out of SMS"),
        step("sms"),
        MON_10_NY,
        W,
        used(),
        Claim((), (("sms", "patient opted out of SMS"),), "2026-03-02"),
        id="nothing-usable-claims-nothing",
    ),
    pytest.param(
        SET,
        patient(),
        step("sms"),
        MON_10_NY,
        W,
        used(("sms", "2026-03-02")),
        Defer(ny(2026, 3, 3, 9), "cap:one_per_channel_per_day", ny(2026, 3, 3, 0)),
        id="channel-used-today-defers-to-tomorrow",
    ),
    pytest.param(
        SET,
        patient(),
        step("sms"),
        MON_10_NY,
        W,
        used(("sms", "2026-03-01"), ("email", "2026-03-02")),
        Claim(("sms",), (), "2026-03-02"),
        id="other-day-or-channel-does-not-hold",
    ),
    pytest.param(
        SET,
        patient(("America/Los_Angeles",)),
        step("sms"),
        datetime(2026, 3, 3, 4, 30, tzinfo=UTC),
        Window(8 * 60, 21 * 60, weekends=True),
        used(),
        Claim(("sms",), (), "2026-03-02"),
        id="local-day-is-the-patients",
    ),
]


@pytest.mark.parametrize(("set_row", "p", "s", "now", "window", "usage", "expected"), CASES)
def test_plan_step(
    set_row: PlanSet, p: PlanPatient, s: Step, now: datetime, window: Window, usage: ContactUsage, expected: object
) -> None:
    assert plan_step(set_row, p, s, now, window, usage) == expected


ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
]
DST_CHANGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
]


@settings(max_examples=150, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    change=st.sampled_from(DST_CHANGES),
    start=st.integers(min_value=0, max_value=22 * 60),
    end=st.integers(min_value=2 * 60, max_value=24 * 60),
    weekends=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.lists(st.sampled_from(["sms", "email", "call", "mail"]), min_size=1, max_size=3, unique=True),
            st.integers(min_value=1, max_value=600),  # minutes until the next tick
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_never_outside_8_to_21_nor_twice_a_channel_a_day(
    zone_name: str, change: datetime, start: int, end: int, weekends: bool, steps: list[tuple[list[str], int]]
) -> None:
    """Ticks from two days before a DST change, with any configured window: every claim is at
    08:00-21:00 patient-local (and inside the window), no channel carries two messages on one
    local day, and a deferral names an allowed moment later than now."""
    window = Window(start, max(end, start + 1), weekends)
    p = PlanPatient(1, "+12125550123", "a@example.com", None, (zone_name,), ALL_USABLE)
    usage = ContactUsage(NO_CAPS)
    seen: set[tuple[str, str]] = set()
    now = change - timedelta(days=2)
    tz = ZoneInfo(zone_name)
    for methods, gap in steps:
        now += timedelta(minutes=gap)
        plan = plan_step(SET, p, step(*methods), now, window, usage)
        if isinstance(plan, Claim):
            local = now.astimezone(tz)
            minutes = local.hour * 60 + local.minute
            assert 8 * 60 <= minutes < 21 * 60 and window.start_min <= minutes < window.end_min, local
            assert plan.local_day == local.date().isoformat()
            for m in plan.methods:
                assert (m, plan.local_day) not in seen, (m, plan.local_day)
                seen.add((m, plan.local_day))
                usage.record(p.id, p.phone, p.email, m, plan.local_day, now)
        elif isinstance(plan, Defer) and plan.until is not None:
            local = plan.until.astimezone(tz)
            assert plan.until > now
            assert 8 * 60 <= local.hour * 60 + local.minute < 21 * 60, local
