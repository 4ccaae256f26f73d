"""Status derivation and Will Fail prediction for one invoice set (SPEC sections 2 and 4).

Pure: the set's conditions, the patient's contact data and the rule set in; the shown status,
its reason and the next send out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from outreach_cli.domain.contacts import Contact, usable_methods
from outreach_cli.domain.rulesets import RuleSet, Step
from outreach_cli.domain.scheduling import Window, expires_at, next_allowed, step_due
from outreach_cli.domain.statuses import DISPLAY_PRECEDENCE, TERMINAL, Status


def step_applies(step: Step, balance_cents: int) -> bool:
    """A step whose min/max balance excludes the current balance is skipped."""
    if step.min_balance_cents is not None and balance_cents < step.min_balance_cents:
        return False
    if step.max_balance_cents is not None and balance_cents > step.max_balance_cents:
        return False
    return True


def predict_will_fail(
    rule_set: RuleSet, from_index: int, usable: dict[str, str | None], balance_cents: int
) -> str | None:
    """The reason the first future step with no usable method (own or fallback) will fail."""
    for step in rule_set.steps[from_index:]:
        if not step_applies(step, balance_cents):
            continue
        candidates = list(step.methods) + [m for m in rule_set.fallback if m not in step.methods]
        if any(usable.get(m) is None for m in candidates):
            continue
        reasons = "; ".join(f"{usable[m]} for {m}" for m in step.methods)
        return f"{step.label()}: {reasons}"
    return None


def derive_status(
    terminal: Status | None,
    *,
    paused: bool,
    expired: bool,
    failed_reason: str | None,
    will_fail_reason: str | None,
) -> tuple[Status, str | None]:
    """The first of paused, expired, failed, will-fail, active (``DISPLAY_PRECEDENCE``); the
    others join the reason."""
    if terminal is not None:
        return terminal, None
    holds: dict[Status, tuple[bool, str | None]] = {
        Status.PAUSED: (paused, None),
        Status.EXPIRED: (expired, "the rule set's expiry day passed with a balance remaining"),
        Status.FAILED: (bool(failed_reason), failed_reason),
        Status.WILL_FAIL: (bool(will_fail_reason), will_fail_reason),
        Status.ACTIVE: (True, None),
    }
    held = [(s, holds[s][1]) for s in DISPLAY_PRECEDENCE if holds[s][0]]
    status, reason = held[0]
    others = [f"{s.value}: {r}" for s, r in held[1:] if r]
    parts = ([reason] if reason else []) + others
    return status, "; ".join(parts) if parts else None


@dataclass
class SetView:
    """What is stored on the set row after evaluation."""

    status: Status
    status_reason: str | None
    will_fail_reason: str | None
    expired_at: datetime | None
    next_send_at: datetime | None
    next_step: str | None
    next_methods: str | None


def settled_view(status: Status, balance_cents: int, expired_at: datetime | None) -> SetView | None:
    """The view of a set whose outcome needs neither the patient nor the rule set: a terminal
    status stays as it is, a set with nothing owed is paid. None when the full evaluation is needed."""
    if status in TERMINAL:
        return SetView(status, None, None, expired_at, None, None, None)
    if balance_cents <= 0:
        return SetView(Status.PAID, None, None, expired_at, None, None, None)
    return None


def evaluate(
    *,
    status: Status,
    rule_set: RuleSet,
    next_step_index: int,
    anchor: datetime,
    paused: bool,
    expired_at: datetime | None,
    failed_reason: str | None,
    balance_cents: int,
    contact: Contact,
    zones: tuple[str, ...],
    window: Window,
    now: datetime,
    held_until: datetime | None = None,
) -> SetView:
    settled = settled_view(status, balance_cents, expired_at)
    if settled is not None:
        return settled
    if expired_at is None and now >= expires_at(anchor, rule_set.expiry_day):
        expired_at = expires_at(anchor, rule_set.expiry_day)
    expired = expired_at is not None
    usable = usable_methods(contact)
    will_fail = None if (paused or expired) else predict_will_fail(rule_set, next_step_index, usable, balance_cents)
    shown, reason = derive_status(
        None, paused=paused, expired=expired, failed_reason=failed_reason, will_fail_reason=will_fail
    )
    next_at = step_title = methods = None
    if not paused and not expired:
        idx = next_step_index
        steps = rule_set.steps
        while idx < len(steps) and not step_applies(steps[idx], balance_cents):
            idx += 1  # skipped at send time; show the step that will actually run
        if idx < len(steps):
            step = steps[idx]
            try:
                # An overdue step (catch-up) is due now, or at the next allowed moment.
                # A step a contact cap held waits until the cap frees (README "Compliance").
                start = max(step_due(anchor, step.day), now, held_until or now)
                next_at = next_allowed(start, zones, window)
            except ValueError as exc:
                # No moment is allowed in all of the patient's zones under this sending window.
                will_fail = f"{step.label()}: {exc} ({' and '.join(zones)}; held_by zones:{'+'.join(zones)})"
                shown, reason = derive_status(
                    None, paused=paused, expired=expired, failed_reason=failed_reason, will_fail_reason=will_fail
                )
            step_title = step.title
            methods = ",".join(step.methods)
    return SetView(shown, reason, will_fail, expired_at, next_at, step_title, methods)
