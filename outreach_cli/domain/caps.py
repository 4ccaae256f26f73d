"""Contact caps (README "Compliance"): counted per phone number or email address, across patient
records and invoice sets.

- at most one message per channel per contact per local day (`cap:one_per_channel_per_day`);
- at most `compliance.calls_per_7_days` calls to a phone number in any 7 x 24 h
  (`cap:calls_per_7_days`; Reg F 12 CFR 1006.14(b)(2); per state, e.g. MA 2: 940 CMR 7.04(1)(f));
- at most `compliance.messages_per_7_days` messages of every channel to a patient's contacts in any
  7 x 24 h when set (`cap:messages_per_7_days`).

Pure: rows of earlier sends in, "held by which cap, until when" out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

WEEK = timedelta(days=7)


def contact_key(method: str, patient_pk: int, phone: str | None, email: str | None) -> str:
    """Who a send of ``method`` reaches: the phone number, the email address, or (a letter) the
    patient record."""
    if method in ("sms", "call") and phone:
        return "phone:" + phone
    if method == "email" and email:
        return "email:" + email.strip().lower()
    return f"patient:{patient_pk}"


def contact_keys(patient_pk: int, phone: str | None, email: str | None) -> set[str]:
    return {contact_key(m, patient_pk, phone, email) for m in ("sms", "email", "mail")}


@dataclass
class ContactUsage:
    caps: dict[str, Any]
    day: set[tuple[str, str, str]] = field(default_factory=set)  # (contact, method, local day)
    recent: list[tuple[str, str, datetime]] = field(default_factory=list)  # (contact, method, at)

    def record(
        self, patient_pk: int, phone: str | None, email: str | None, method: str, local_day: str | None, at: datetime
    ) -> None:
        key = contact_key(method, patient_pk, phone, email)
        if local_day:
            self.day.add((key, method, local_day))
        self.recent.append((key, method, at))

    def add(self, p: Any, method: str, local_day: str, at: datetime) -> None:
        self.record(p.id, p.phone, p.email, method, local_day, at)

    def limits(self, state: str | None) -> tuple[int | None, int | None]:
        """(calls per 7 days, messages per 7 days) for a patient in ``state``."""
        calls = self.caps.get("calls_per_7_days")
        msgs = self.caps.get("messages_per_7_days")
        per_state = (self.caps.get("states") or {}).get((state or "").strip().upper()) or {}
        if per_state.get("calls_per_7_days") is not None:
            calls = (
                per_state["calls_per_7_days"] if calls is None else min(int(calls), int(per_state["calls_per_7_days"]))
            )
        if per_state.get("messages_per_7_days") is not None:
            m = int(per_state["messages_per_7_days"])
            msgs = m if msgs is None else min(int(msgs), m)
        return (int(calls) if calls is not None else None, int(msgs) if msgs is not None else None)

    def held(
        self, p: Any, methods: list[str], today: str, now: datetime, zone_name: str
    ) -> tuple[str, datetime] | None:
        """The cap that holds a step with these methods now, and the moment it frees; None when
        none does."""
        from datetime import time as dtime

        from outreach_cli.domain.scheduling import zone

        holds: list[tuple[str, datetime]] = []
        for m in methods:
            if m not in ("sms", "email", "call", "mail"):
                continue
            key = contact_key(m, p.id, p.phone, p.email)
            if (key, m, today) in self.day:
                tz = zone(zone_name)
                tomorrow = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), dtime(0), tzinfo=tz)
                holds.append(("cap:one_per_channel_per_day", tomorrow))
        calls_cap, msgs_cap = self.limits(p.state)
        since = now - WEEK
        if "call" in methods and calls_cap is not None:
            key = contact_key("call", p.id, p.phone, p.email)
            times = sorted(at for k, m, at in self.recent if k == key and m == "call" and at > since)
            if len(times) >= calls_cap:
                holds.append(("cap:calls_per_7_days", times[len(times) - calls_cap] + WEEK))
        if msgs_cap is not None and any(m in ("sms", "email", "call", "mail") for m in methods):
            keys = contact_keys(p.id, p.phone, p.email)
            times = sorted(at for k, _, at in self.recent if k in keys and at > since)
            if len(times) >= msgs_cap:
                holds.append(("cap:messages_per_7_days", times[len(times) - msgs_cap] + WEEK))
        if not holds:
            return None
        return max(holds, key=lambda h: h[1])
