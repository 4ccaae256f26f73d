from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.money import format_dollars, parse_dollars, plain_dollars
from outreach_cli.domain.ranges import parse_amount_range, parse_time_range

UTC = UTC
NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    "text,cents",
    [
        ("120.50", 12050),
        ("$1,234.56", 123456),
        ("1200", 120000),
        ("$1,200.00", 120000),
        ("0.5", 50),
        (".99", 99),
        ("  $7 ", 700),
        ("-5.00", -500),
        ("12.340", 1234),
    ],
)
def test_parse_dollars(text: str, cents: int) -> None:
    assert parse_dollars(text) == cents


@pytest.mark.parametrize("text", ["", "abc", "1.234", "1,23.00", "$", "12..3", "1e5", "NaN"])
def test_parse_dollars_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dollars(text)


def test_format() -> None:
    assert format_dollars(123456) == "$1,234.56"
    assert format_dollars(5) == "$0.05"
    assert plain_dollars(123456) == "1234.56"
    assert plain_dollars(0) == "0.00"


@pytest.mark.parametrize(
    "text,low,high",
    [
        ("100..500", 10000, 50000),
        ("100..", 10000, None),
        ("..50", None, 5000),
        ("75", 7500, 7500),
        ("$1,000.50..$2,000", 100050, 200000),
    ],
)
def test_amount_ranges(text: str, low: int | None, high: int | None) -> None:
    r = parse_amount_range(text)
    assert (r.low, r.high) == (low, high)


@pytest.mark.parametrize("text", ["..", "abc", "500..100", "1..2..3", "10..x"])
def test_amount_range_errors_show_forms(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"accepted forms: 100\.\.500"):
        parse_amount_range(text)


NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York


def test_date_range_whole_days_in_practice_zone() -> None:
    r = parse_time_range("2026-03-01..2026-03-02", tz=NY, now=NOW)
    assert r.start == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)  # midnight EST
    assert r.end == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)  # end of the 2nd, inclusive


def test_single_date_is_that_day() -> None:
    r = parse_time_range("2026-03-01", tz=NY, now=NOW)
    assert (r.start, r.end) == (datetime(2026, 3, 1, 5, tzinfo=UTC), datetime(2026, 3, 2, 5, tzinfo=UTC))


def test_open_and_relative() -> None:
    r = parse_time_range("-7d..", tz=NY, now=NOW)
    assert r.start == datetime(2026, 3, 3, 5, tzinfo=UTC) and r.end is None
    r = parse_time_range("..yesterday", tz=NY, now=NOW)
    assert r.start is None and r.end == datetime(2026, 3, 10, 4, tzinfo=UTC)  # DST began Mar 8: EDT
    r = parse_time_range("today", tz=NY, now=NOW)
    assert r.start == datetime(2026, 3, 10, 4, tzinfo=UTC)
    r = parse_time_range("-2w..+3d", tz=NY, now=NOW)
    assert r.start == datetime(2026, 2, 24, 5, tzinfo=UTC) and r.end == datetime(2026, 3, 14, 4, tzinfo=UTC)


def test_datetimes_and_offsets() -> None:
    r = parse_time_range("2026-03-01T10:00Z..2026-03-01T12:00+01:00", tz=NY, now=NOW)
    assert r.start == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert r.end is not None and r.end > datetime(2026, 3, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize("text", ["..", "tomorrowish", "2026-13-01", "2026-03-05..2026-03-01", "1..2..3", "-7x"])
def test_bad_date_ranges(text: str) -> None:
    with pytest.raises(InvalidInput, match="accepted forms"):
        parse_time_range(text, tz=NY, now=NOW)
