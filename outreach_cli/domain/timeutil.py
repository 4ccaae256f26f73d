"""Time parsing and the injectable clock. All instants are timezone-aware UTC."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc  # noqa: UP017 - re-exported for the core modules


# A clock: what providers and the tick ask for "now". `utcnow` is the one reading of the real
# clock in the package; tests and `--now` pass their own.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock (the only `datetime.now` in outreach_cli)."""
    return datetime.now(UTC)


def as_utc(dt: datetime, tz: ZoneInfo | timezone = UTC) -> datetime:
    """Naive values are read in ``tz``; the result is aware UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def get_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like America/New_York)") from None


class BadTime(ValueError):
    """A value that is not a time: what it is not, the value, and a hint at the forms; callers
    that name the value themselves, or list the forms, use the parts."""

    def __init__(self, reason: str, value: str, hint: str, *, forms_hint: bool) -> None:
        super().__init__(f"{reason}: {value!r} ({hint})")
        self.reason, self.value, self.hint = reason, value, hint
        self.forms_hint = forms_hint  # the hint lists the accepted forms (nothing more)


def parse_datetime(text: str, tz: ZoneInfo | timezone = UTC) -> datetime:
    """ISO 8601 date or datetime (with 'Z' or an offset, or naive in ``tz``) -> aware UTC.

    A bare date means its midnight in ``tz``.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty date")
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return datetime.combine(date.fromisoformat(raw), time(0), tzinfo=tz).astimezone(UTC)
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    else:
        return as_utc(dt, tz)
    us = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", raw)
    if us:  # US exports write month/day/year (decision: never day/month/year)
        mo, d, y, hh, mm, ss = us.groups()
        try:
            local = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        except ValueError:
            raise BadTime("not a date", text, "month/day/year, or 2026-03-01", forms_hint=False) from None
        return as_utc(local, tz)
    try:
        from dateutil import parser as du

        dt = du.isoparse(raw)
    except (ValueError, OverflowError):
        hint = "use 2026-03-01, 2026-03-01T14:30 or 2026-03-01T14:30:00Z"
        raise BadTime("not a date or datetime", text, hint, forms_hint=True) from None
    return as_utc(dt, tz)


def iso_z(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with 'Z', whole seconds (JSON/TSV/CSV): `2026-11-26T14:00:00Z`.

    One precision everywhere, so jq's `fromdateiso8601` and spreadsheets read every value.
    """
    if dt is None:
        return None
    return as_utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_local(dt: datetime, now: datetime, tz: ZoneInfo | timezone, *, relative: bool = True) -> str:
    """A time for people, in ``tz``: `Nov 26 09:00`, with the year when it is not this year's,
    and `(in 3h)` / `(2d ago)` when it is within a week of ``now``."""
    local = as_utc(dt).astimezone(tz)
    this_year = as_utc(now).astimezone(tz).year
    text = f"{local:%b} {local.day}" + (f" {local.year}" if local.year != this_year else "") + f" {local:%H:%M}"
    if relative and abs(dt - now) < timedelta(days=7):
        text += f" ({format_relative(dt, now)})"
    return text


def format_relative(dt: datetime, now: datetime) -> str:
    """'in 3h', '2d ago' for terminal tables."""
    delta = dt - now
    secs = int(delta.total_seconds())
    ahead = secs >= 0
    secs = abs(secs)
    if secs < 60:
        text = "now" if secs < 30 else "1m"
    elif secs < 3600:
        text = f"{secs // 60}m"
    elif secs < 86400:
        text = f"{secs // 3600}h"
    else:
        text = f"{secs // 86400}d"
    if text == "now":
        return text
    return f"in {text}" if ahead else f"{text} ago"


DAY = timedelta(days=1)
