"""`forecast`: every send due in the next days, and the ones predicted to fail, with reasons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from outreach_cli.domain.contacts import usable_methods
from outreach_cli.domain.context import Context
from outreach_cli.domain.evaluation import step_applies
from outreach_cli.domain.patient_view import contact_of, window_of, zones_of
from outreach_cli.domain.rulesets import RuleSet, Step
from outreach_cli.domain.scheduling import expires_at, explain, step_due
from outreach_cli.domain.statuses import SENDABLE, Status
from outreach_cli.domain.timeutil import iso_z
from outreach_cli.outreach.usage import load_patients
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

FORECAST_COLUMNS = [
    "id",
    "patient_id",
    "due_at",
    "send_at",
    "held_by",
    "step",
    "day",
    "methods",
    "usable_methods",
    "prediction",
    "reason",
]


def forecast(store: Store, ctx: Context, days: int) -> list[dict[str, Any]]:
    """Every send due in the next ``days`` days, and the ones predicted to fail, with reasons.
    Each row says when the step is due (`due_at`), when it will go (`send_at`) and the rule that
    decided that moment (`held_by`: window, weekend, holiday:NAME, zones:A+B, cap:NAME, opt-out)."""
    horizon = ctx.now + timedelta(days=days)
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        sets = conn.execute(_forecast_query(horizon)).all()
        pmap = load_patients(conn, {s.patient_pk for s in sets})
    out = [row for s in sets for row in _set_rows(ctx, s, pmap[s.patient_pk], rule_sets.get(s.rule_set_id), horizon)]
    out.sort(key=lambda r: (r["send_at"] or "~", r["id"]))
    return out


def _forecast_query(horizon: datetime) -> Any:
    return (
        select(invoice_set_t, patient_t.c.patient_id.label("p_patient_id"))
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .where(
            invoice_set_t.c.status.in_([s.value for s in SENDABLE]),
            invoice_set_t.c.paused_at.is_(None),
            or_(
                and_(invoice_set_t.c.next_send_at.is_not(None), invoice_set_t.c.next_send_at < horizon),
                # no common sending window: never sent, listed as predicted to fail (D7)
                and_(
                    invoice_set_t.c.next_send_at.is_(None),
                    invoice_set_t.c.status == Status.WILL_FAIL.value,
                    invoice_set_t.c.expired_at.is_(None),
                ),
            ),
        )
        .order_by(invoice_set_t.c.next_send_at, invoice_set_t.c.id)
    )


def _set_rows(ctx: Context, s: Any, p: Any, rs: RuleSet, horizon: datetime) -> Iterator[dict[str, Any]]:
    """The set's remaining steps, in order, each at the moment it will go."""
    usable = usable_methods(contact_of(p))
    zones = zones_of(p, ctx.practice_tz)
    window = window_of(p, ctx)
    end = expires_at(s.anchor_at, rs.expiry_day)
    first = True
    prev: tuple[datetime, str | None] | None = None
    for step in rs.steps[(s.next_step_index or 0) :]:
        due = step_due(s.anchor_at, step.day)
        start, cap = max(due, ctx.now), None
        if first and s.held_by and s.held_until is not None and s.held_until > start:
            start, cap = s.held_until, s.held_by
        if prev is not None and prev[0] > start:
            start, cap = prev  # steps go in order: never before the step ahead of it
        at, held_by = explain(start, zones, window)
        held_by = cap or held_by
        if at is not None:
            prev = (at, held_by)
            if at >= horizon or at >= end:
                return
        if not step_applies(step, s.amount_outstanding_cents):
            continue
        first = False
        yield _row(s, step, due, at, held_by, usable, zones, rs)
        if at is None:
            return


def _row(
    s: Any,
    step: Step,
    due: datetime,
    at: datetime | None,
    held_by: str | None,
    usable: dict[str, str | None],
    zones: tuple[str, ...],
    rs: RuleSet,
) -> dict[str, Any]:
    ok = [m for m in step.methods if usable[m] is None]
    fb = [m for m in rs.fallback if m not in step.methods and usable[m] is None]
    reason: str | None = None
    if at is None:
        prediction, reason = "will-fail", f"no common sending window ({' and '.join(zones)})"
    elif ok:
        prediction = "ok"
    elif fb:
        prediction, reason = "fallback", "own methods unusable; fallback " + fb[0]
    else:
        prediction, reason = "will-fail", "; ".join(f"{m}: {usable[m]}" for m in step.methods)
    if at is not None and not ok and any("opted out" in (usable[m] or "") for m in step.methods):
        held_by = held_by or "opt-out"
    return {
        "id": s.id,
        "patient_id": s.p_patient_id,
        "due_at": iso_z(due),
        "send_at": iso_z(at),
        "held_by": held_by,
        "step": step.title,
        "day": step.day,
        "methods": list(step.methods),
        "usable_methods": ok,
        "prediction": prediction,
        "reason": reason,
    }
