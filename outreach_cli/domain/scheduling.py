"""Scheduling (SPEC section 4): due times, the sending window, weekends, holidays, the hard
08:00-21:00 bound, the intersection of the phone's and the address's time zones, expiry.

Pure: aware UTC datetimes and zone names in, aware UTC datetimes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from outreach_cli.domain.timeutil import UTC

HARD_START = 8 * 60  # nothing before 08:00 patient-local, whatever the configuration
HARD_END = 21 * 60  # nor after 21:00
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """When sending is allowed: the daily window in minutes, weekends, holidays."""

    start_min: int = 9 * 60
    end_min: int = 17 * 60
    weekends: bool = False
    holidays: frozenset[date] = field(default_factory=frozenset)  # explicit dates
    calendars: tuple[str, ...] = ()  # holiday calendars: "US", "US-MA", ...
    state_holidays: bool = False  # add the patient's state's holidays (see ``for_state``)
    state: str | None = None

    @classmethod
    def from_settings(
        cls, window: str, weekends: bool, holidays: list[str] | str, state_holidays: bool = False
    ) -> Window:
        a, _, b = window.partition("-")
        ah, am = (int(x) for x in a.split(":"))
        bh, bm = (int(x) for x in b.split(":"))
        dates, calendars = split_holidays(holidays)
        return cls(
            ah * 60 + am,
            bh * 60 + bm,
            bool(weekends),
            frozenset(dates),
            tuple(calendars),
            bool(state_holidays),
        )

    @classmethod
    def from_sending(cls, sending: dict[str, object]) -> Window:
        """From the `[sending]` settings table."""
        return cls.from_settings(
            str(sending["window"]),
            bool(sending["weekends"]),
            sending["holidays"],  # type: ignore[arg-type]
            bool(sending.get("state_holidays", False)),
        )

    def for_state(self, state: str | None) -> Window:
        """The window for a patient in ``state``: its holidays added when `state_holidays` is on."""
        st = (state or "").strip().upper() or None
        if not self.state_holidays or st == self.state or st not in us_subdivisions():
            return self
        return replace(self, state=st)

    @property
    def effective(self) -> tuple[int, int]:
        """The configured window clipped to the hard 08:00-21:00 bound (minutes after midnight)."""
        return max(self.start_min, HARD_START), min(self.end_min, HARD_END)

    def holiday(self, d: date) -> str | None:
        """The name of the holiday on ``d`` (a configured date is named by itself), else None."""
        if d in self.holidays:
            return d.isoformat()
        for cal in self.calendars:
            name = calendar_holidays(cal, d.year).get(d)
            if name:
                return name
        if self.state:
            name = calendar_holidays("US-" + self.state, d.year).get(d)
            if name:
                return name
        return None

    def day_allowed(self, d: date) -> bool:
        if not self.weekends and d.weekday() >= 5:
            return False
        return self.holiday(d) is None


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def split_holidays(entries: list[str] | str) -> tuple[list[date], list[str]]:
    """`sending.holidays` entries -> (explicit dates, calendar names). Raises ValueError naming a
    bad entry. A calendar is a country code (`US`) or country-subdivision (`US-MA`) known to the
    `holidays` package."""
    if isinstance(entries, str):
        entries = [e.strip() for e in entries.split(",") if e.strip()]
    dates: list[date] = []
    calendars: list[str] = []
    for raw in entries:
        text = str(raw).strip()
        if _DATE.match(text):
            try:
                dates.append(date.fromisoformat(text))
            except ValueError:
                raise ValueError(f"{text!r} is not a real date") from None
            continue
        name = text.upper()
        country, _, sub = name.partition("-")
        if country == "US" and (not sub or sub in US_CALENDARS):
            calendars.append(name)  # the usual case, known without loading the `holidays` package
            continue
        known = supported_calendars()
        if country not in known or (sub and sub not in known[country]):
            raise ValueError(f"{text!r} is neither a date like 2026-12-25 nor a holiday calendar like US or US-MA")
        calendars.append(name)
    return dates, calendars


# The `holidays` package's US subdivisions (a test checks they agree): reading the configuration
# on every command then never loads the package; only a date check does.
US_CALENDARS = frozenset(
    "AK AL AR AS AZ CA CO CT DC DE FL GA GU HI IA ID IL IN KS KY LA MA MD ME MI MN MO MP MS MT NC ND NE "
    "NH NJ NM NV NY OH OK OR PA PR RI SC SD TN TX UM UT VA VI VT WA WI WV WY".split()
)


@lru_cache(maxsize=1)
def supported_calendars() -> dict[str, frozenset[str]]:
    import holidays

    return {c: frozenset(subs) for c, subs in holidays.list_supported_countries().items()}


def us_subdivisions() -> frozenset[str]:
    return US_CALENDARS


@lru_cache(maxsize=256)
def calendar_holidays(name: str, year: int) -> dict[date, str]:
    """{date: name} of one calendar's holidays in one year (observed dates included)."""
    import holidays

    country, _, sub = name.partition("-")
    cal = holidays.country_holidays(country, subdiv=sub or None, years=year)
    return {d: "; ".join(cal.get_list(d)) for d in cal}


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def patient_zones(
    explicit: str | None, phone_tz: str | None, address_tz: str | None, practice_tz: str
) -> tuple[str, ...]:
    """The zones a moment must be allowed in, primary first.

    Primary: the `timezone` column, else the phone's zone (when it has exactly one), else the
    address state's zone, else the practice zone. When the phone and the address point to other
    zones, a moment must be allowed in those too (we err on the side of the patient's quiet hours).
    """
    primary = explicit or phone_tz or address_tz or practice_tz
    out = [primary]
    for z in (phone_tz, address_tz):
        if z and z not in out:
            out.append(z)
    return tuple(out)


def _local_minutes(dt_local: datetime) -> int:
    return dt_local.hour * 60 + dt_local.minute


def allowed_in(moment: datetime, zone_name: str, window: Window) -> bool:
    local = moment.astimezone(zone(zone_name))
    if not window.day_allowed(local.date()):
        return False
    start, end = window.effective
    mins = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
    return start <= mins < end


def is_allowed(moment: datetime, zones: tuple[str, ...], window: Window) -> bool:
    return all(allowed_in(moment, z, window) for z in zones)


def _at_local(d: date, minutes: int, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(minutes // 60, minutes % 60), tzinfo=tz).astimezone(UTC)


def _next_in_zone(moment: datetime, zone_name: str, window: Window) -> datetime:
    """The earliest allowed moment >= ``moment`` in one zone."""
    tz = zone(zone_name)
    local = moment.astimezone(tz)
    start, end = window.effective
    d = local.date()
    for _ in range(400):
        if window.day_allowed(d):
            day_start = _at_local(d, start, tz)
            day_end = _at_local(d, end, tz)
            if moment < day_start:
                return day_start
            if moment < day_end:
                return moment
        d += DAY
    raise ValueError("no allowed sending moment within 400 days; check sending.window/weekends/holidays")


@lru_cache(maxsize=8192)
def next_allowed(moment: datetime, zones: tuple[str, ...], window: Window) -> datetime:
    """The first moment >= ``moment`` allowed in every zone. Pure, so cached: a re-evaluation of
    many overdue sets asks the same question (now, their zones) again and again."""
    t = moment
    for _ in range(100):
        moved = t
        for z in zones:
            moved = max(moved, _next_in_zone(moved, z, window))
        if moved == t and is_allowed(t, zones, window):
            return t
        t = moved
        if is_allowed(t, zones, window):
            return t
    raise ValueError("the patient's time zones have no common sending window")


def step_due(anchor: datetime, day: int) -> datetime:
    return anchor + day * DAY


def scheduled_at(anchor: datetime, day: int, zones: tuple[str, ...], window: Window) -> datetime:
    """When a step is due: anchor + day x 24h, moved to the first allowed moment."""
    return next_allowed(step_due(anchor, day), zones, window)


def expires_at(anchor: datetime, expiry_day: int) -> datetime:
    """Expiry ignores the send window."""
    return anchor + expiry_day * DAY


def local_day(moment: datetime, zone_name: str) -> str:
    return moment.astimezone(zone(zone_name)).date().isoformat()


def explain(due: datetime, zones: tuple[str, ...], window: Window) -> tuple[datetime | None, str | None]:
    """(the moment a send due at ``due`` goes, the rule that held it), ``held_by`` one of None
    (not held), `window`, `weekend`, `holiday:NAME`, `zones:A+B` (the zones' windows intersect
    later than the primary zone's alone, or never: then the moment is None)."""
    try:
        at = next_allowed(due, zones, window)
    except ValueError:
        return None, "zones:" + "+".join(zones)
    if at == due:
        return at, None
    try:
        alone = next_allowed(due, zones[:1], window)
    except ValueError:
        alone = at
    if alone < at:
        return at, "zones:" + "+".join(zones)
    tz = zone(zones[0])
    d = due.astimezone(tz).date()
    end = at.astimezone(tz).date()
    weekend = False
    while d < end:
        name = window.holiday(d)
        if name:
            return at, "holiday:" + name
        if not window.weekends and d.weekday() >= 5:
            weekend = True
        d += DAY
    if not window.day_allowed(end) or weekend:
        return at, "weekend"
    return at, "window"
