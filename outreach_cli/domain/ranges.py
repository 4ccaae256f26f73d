"""The `list` range filters: `--amount` and the date ranges (SPEC section 7)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.money import parse_dollars
from outreach_cli.domain.timeutil import UTC, BadTime, parse_datetime

AMOUNT_FORMS = "100..500, 100.., ..50, 75 (dollars, inclusive)"
DATE_FORMS = (
    "A..B with dates (2026-03-01), datetimes (2026-03-01T14:30, ...Z or +02:00), today, "
    "yesterday, tomorrow, -7d, +3d, -2w; open ends allowed (2026-03-01.., ..today); "
    "a single value means that whole day"
)


@dataclass(frozen=True)
class CentsRange:
    """Inclusive [low, high] in cents; None is an open end."""

    low: int | None
    high: int | None


@dataclass(frozen=True)
class TimeRange:
    """Half-open [start, end) in UTC; None is an open end."""

    start: datetime | None
    end: datetime | None


def parse_amount_range(text: str) -> CentsRange:
    raw = text.strip()
    if "..." in raw:
        raise InvalidInput(f"--amount {text!r}: not a range: use A..B (two dots); accepted forms: {AMOUNT_FORMS}")
    try:
        if ".." in raw:
            lo_s, _, hi_s = raw.partition("..")
            if ".." in hi_s:
                raise ValueError("more than one '..'")
            lo = parse_dollars(lo_s) if lo_s.strip() else None
            hi = parse_dollars(hi_s) if hi_s.strip() else None
            if lo is None and hi is None:
                raise ValueError("both ends are open")
        else:
            lo = hi = parse_dollars(raw)
    except ValueError as exc:
        raise InvalidInput(f"--amount {text!r}: {exc}; accepted forms: {AMOUNT_FORMS}") from None
    if (lo is not None and lo < 0) or (hi is not None and hi < 0):
        raise InvalidInput(f"--amount {text!r}: amounts are never negative; accepted forms: {AMOUNT_FORMS}")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput(f"--amount {text!r}: the low end is above the high end; accepted forms: {AMOUNT_FORMS}")
    return CentsRange(lo, hi)


_REL = r"^([+-])(\d+)([dw])$"  # compiled on first use


def _day_or_instant(token: str, tz: ZoneInfo, today: date) -> tuple[datetime, bool]:
    """Returns (instant, is_whole_day): dates are whole days in the practice zone."""
    t = token.strip().lower()
    d: date | None = None
    if t == "today":
        d = today
    elif t == "yesterday":
        d = today - timedelta(days=1)
    elif t == "tomorrow":
        d = today + timedelta(days=1)
    elif m := re.match(_REL, t):
        n = int(m.group(2)) * (7 if m.group(3) == "w" else 1)
        d = today + timedelta(days=n if m.group(1) == "+" else -n)
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        d = date.fromisoformat(t)
    if d is not None:
        return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC), True
    return parse_datetime(token, tz), False


def parse_time_range(
    text: str, *, tz: ZoneInfo, now: datetime, flag: str = "--created", single_is_start: bool = False
) -> TimeRange:
    """`single_is_start`: a single value means "from then on" (`audit --since -7d`), not that day."""
    raw = text.strip()
    forms = DATE_FORMS.replace("that whole day", "from then on") if single_is_start else DATE_FORMS
    if "..." in raw:
        raise InvalidInput(f"{flag} {text!r}: not a range: use A..B (two dots); accepted forms: {forms}")
    if single_is_start and raw and ".." not in raw:
        raw += ".."
    today = now.astimezone(tz).date()

    def day_end(start: datetime) -> datetime:
        local = start.astimezone(tz).date() + timedelta(days=1)
        return datetime.combine(local, time(0), tzinfo=tz).astimezone(UTC)

    try:
        if not raw:
            raise ValueError("empty range")
        if ".." in raw:
            a, _, b = raw.partition("..")
            if ".." in b:
                raise ValueError("more than one '..'")
            start = end = None
            if a.strip():
                start, _ = _day_or_instant(a, tz, today)
            if b.strip():
                inst, whole = _day_or_instant(b, tz, today)
                # Dates are inclusive whole days; datetimes are inclusive instants.
                end = day_end(inst) if whole else inst + timedelta(microseconds=1)
            if start is None and end is None:
                raise ValueError("both ends are open")
        else:
            inst, whole = _day_or_instant(raw, tz, today)
            start = inst
            end = day_end(inst) if whole else inst + timedelta(microseconds=1)
    except BadTime as exc:
        # The whole value is named already, and the accepted forms follow: not twice each.
        detail = exc.reason if exc.value.strip() == text.strip() else f"{exc.reason}: {exc.value!r}"
        detail += "" if exc.forms_hint else f" ({exc.hint})"
        raise InvalidInput(f"{flag} {text!r}: {detail}; accepted forms: {forms}") from None
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{flag} {text!r}: {exc}; accepted forms: {forms}") from None
    if start is not None and end is not None and start >= end:
        raise InvalidInput(f"{flag} {text!r}: the range ends before it starts; accepted forms: {forms}")
    return TimeRange(start, end)
