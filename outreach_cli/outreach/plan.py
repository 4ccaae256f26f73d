"""What to do with one invoice set's due step right now: defer it, skip it, or claim its sends.

Pure: plain data in, a decision out; no database, no clock, no I/O. The claim phase applies the
decision (see ``claims.py``); the rules live here and are tested case by case in
``tests/unit/test_plan.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from outreach_cli.domain.evaluation import step_applies
from outreach_cli.domain.money import format_dollars
from outreach_cli.domain.rulesets import Step
from outreach_cli.domain.scheduling import Window, is_allowed, local_day, next_allowed


@dataclass(frozen=True)
class PlanSet:
    id: int
    amount_outstanding_cents: int


@dataclass(frozen=True)
class PlanPatient:
    """The facts about a patient that decide a send: who their contacts are (caps count per
    phone number and email address), their zones (primary first) and which methods can reach them
    (``usable[method]`` is None, or the reason it cannot)."""

    id: int
    phone: str | None
    email: str | None
    state: str | None
    zones: tuple[str, ...]
    usable: Mapping[str, str | None]


class ChannelUse(Protocol):
    """What was already sent to the patient's contacts (``caps.ContactUsage``)."""

    def held(
        self, p: PlanPatient, methods: list[str], today: str, now: datetime, zone_name: str
    ) -> tuple[str, datetime] | None: ...


@dataclass(frozen=True)
class Defer:
    """Not now. ``until`` is the next allowed moment (None: the zones share none, and the set's
    re-evaluation says will-fail); ``held_by`` names the contact cap holding it, if one does."""

    until: datetime | None
    held_by: str | None = None
    held_until: datetime | None = None


@dataclass(frozen=True)
class Skip:
    """The step does not apply (the balance is outside its min/max): every method is skipped with
    ``reason`` and the set moves on to its next step."""

    reason: str


@dataclass(frozen=True)
class Claim:
    """Send ``methods`` now; ``unusable`` are skipped with their reasons. No methods at all: the
    step's outcome (fallbacks or failed) is decided right away. ``local_day`` is the patient's
    primary-zone date, which the one-message-per-channel-per-day cap counts."""

    methods: tuple[str, ...]
    unusable: tuple[tuple[str, str], ...]
    local_day: str


Plan = Defer | Skip | Claim


def next_allowed_or_none(moment: datetime, zones: tuple[str, ...], window: Window) -> datetime | None:
    """None when the zones share no allowed moment."""
    try:
        return next_allowed(moment, zones, window)
    except ValueError:
        return None


def plan_step(
    set_row: PlanSet, patient: PlanPatient, step: Step, now: datetime, window: Window, channels_used: ChannelUse
) -> Plan:
    """The decision for ``step`` of ``set_row`` at ``now``, in this order: outside the patient's
    sending window (every zone's) -> defer to the next allowed moment; the balance is outside the
    step's min/max -> skip; a contact cap (one message per channel per local day, calls or
    messages per 7 days) holds a usable method -> defer until it frees, at an allowed moment;
    otherwise claim the usable methods and skip the rest with their reasons."""
    zones = patient.zones
    if not is_allowed(now, zones, window):
        return Defer(next_allowed_or_none(now, zones, window))
    if not step_applies(step, set_row.amount_outstanding_cents):
        balance = format_dollars(set_row.amount_outstanding_cents)
        return Skip(f"balance {balance} is outside this step's min/max balance")
    today = local_day(now, zones[0])
    candidates = [m for m in step.methods if patient.usable[m] is None]
    held = channels_used.held(patient, candidates, today, now, zones[0])
    if held is not None:
        cap, until = held
        # Deferred, never dropped: the step goes at the first allowed moment after the cap frees.
        return Defer(next_allowed_or_none(until, zones, window), cap, until)
    unusable = tuple((m, reason) for m in step.methods if (reason := patient.usable[m]) is not None)
    return Claim(tuple(candidates), unusable, today)
