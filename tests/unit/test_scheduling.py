"""Scheduling rules (SPEC section 4), each moved through a controllable clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_cli.domain.scheduling import Window, is_allowed, next_allowed, patient_zones, scheduled_at

UTC = UTC
W = Window()  # 09:00-17:00, no weekends


def local(dt: datetime, z: str) -> datetime:
    return dt.astimezone(ZoneInfo(z))


def test_inside_window_is_unchanged() -> None:
    t = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 New York
    assert next_allowed(t, ("America/New_York",), W) == t


def test_before_window_moves_to_start() -> None:
    t = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 07:00 New York
    assert local(next_allowed(t, ("America/New_York",), W), "America/New_York").hour == 9


def test_after_window_moves_to_next_day() -> None:
    t = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 18:00 New York, Monday
    got = local(next_allowed(t, ("America/New_York",), W), "America/New_York")
    assert (got.date(), got.hour) == (date(2026, 3, 3), 9)


def test_weekend_and_holiday_skipped() -> None:
    t = datetime(2026, 3, 6, 22, 30, tzinfo=UTC)  # Friday 17:30 New York
    got = local(next_allowed(t, ("America/New_York",), W), "America/New_York")
    assert got.date() == date(2026, 3, 9)  # Monday
    w = Window(holidays=frozenset({date(2026, 3, 9)}))
    assert local(next_allowed(t, ("America/New_York",), w), "America/New_York").date() == date(2026, 3, 10)
    we = Window(weekends=True)
    assert local(next_allowed(t, ("America/New_York",), we), "America/New_York").date() == date(2026, 3, 7)


def test_hard_bounds_override_configuration() -> None:
    w = Window(start_min=5 * 60, end_min=23 * 60, weekends=True)
    t = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 06:00 New York
    assert local(next_allowed(t, ("America/New_York",), w), "America/New_York").hour == 8
    late = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # 21:30 New York
    assert not is_allowed(late, ("America/New_York",), w)


def test_two_zones_must_both_allow() -> None:
    # Phone in New York, address in Los Angeles: 09:00 New York is 06:00 in LA -> wait for 09:00 LA.
    t = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    got = next_allowed(t, ("America/New_York", "America/Los_Angeles"), W)
    assert local(got, "America/Los_Angeles").hour == 9 and local(got, "America/New_York").hour == 12


def test_disjoint_zones_weekend_edge() -> None:
    # Tokyo and New York share no weekday 09:00-17:00 hours when weekends are off... except none:
    # Tokyo Tue 09:00 = NY Mon 20:00. The window intersection is empty; with a wide window it exists.
    w = Window(start_min=8 * 60, end_min=21 * 60, weekends=True)
    t = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    got = next_allowed(t, ("America/New_York", "Asia/Tokyo"), w)
    assert is_allowed(got, ("America/New_York", "Asia/Tokyo"), w)


def test_dst_spring_forward() -> None:
    anchor = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)  # 09:30 EST Sunday
    got = scheduled_at(anchor, 7, ("America/New_York",), Window(weekends=True))  # Mar 8: DST starts
    assert local(got, "America/New_York").hour == 10  # 14:30Z is 10:30 EDT: still inside the window


def test_time_zone_resolution_order() -> None:
    assert patient_zones("Asia/Tokyo", "America/New_York", None, "UTC")[0] == "Asia/Tokyo"
    assert patient_zones(None, "America/New_York", "America/Chicago", "UTC") == ("America/New_York", "America/Chicago")
    assert patient_zones(None, None, "America/Chicago", "UTC") == ("America/Chicago",)
    assert patient_zones(None, None, None, "Europe/Paris") == ("Europe/Paris",)


ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "America/Anchorage",
    "Europe/London",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Kiritimati",
]


@settings(max_examples=400, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True),
    start=st.integers(0, 20 * 60),
    length=st.integers(60, 12 * 60),
    weekends=st.booleans(),
)
def test_next_allowed_is_allowed_and_never_outside_8_to_21(
    moment: datetime, zones: list[str], start: int, length: int, weekends: bool
) -> None:
    w = Window(start_min=start, end_min=min(24 * 60, start + length), weekends=weekends)
    lo, hi = w.effective
    if hi - lo < 60:
        return  # a window entirely outside 08:00-21:00 has no allowed moment: config validation's job
    try:
        got = next_allowed(moment, tuple(zones), w)
    except ValueError:
        return  # two far-apart zones may share no allowed hour; the caller reports it
    assert got >= moment
    assert is_allowed(got, tuple(zones), w)
    for z in zones:
        loc = local(got, z)
        assert 8 * 60 <= loc.hour * 60 + loc.minute < 21 * 60
    # nothing allowed was skipped: one minute earlier is either before `moment` or not allowed
    earlier = got - timedelta(minutes=1)
    assert earlier < moment or not is_allowed(earlier, tuple(zones), w)


def test_us_calendars_agree_with_the_holidays_package() -> None:
    from outreach_cli.domain.scheduling import US_CALENDARS, supported_calendars

    assert supported_calendars()["US"] == US_CALENDARS
