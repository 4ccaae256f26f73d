"""Re-evaluating invoice sets after a change: amounts, status, next send, cancelled sends."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.patient_view import contact_of, window_of, zones_of
from outreach_cli.domain.statuses import OPEN, SendStatus, Status
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import (
    charge_t,
    invoice_set_t,
    patient_t,
    send_t,
)

if TYPE_CHECKING:
    from outreach_cli.domain.evaluation import SetView


def recompute_amounts(conn: Connection, set_ids: Iterable[int]) -> None:
    ids = sorted(set(set_ids))
    total = (
        select(func.coalesce(func.sum(charge_t.c.outstanding_cents), 0))
        .where(charge_t.c.invoice_set_id == invoice_set_t.c.id)
        .scalar_subquery()
    )
    for chunk in chunks(ids):
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(amount_outstanding_cents=total))


def cancel_pending_sends(conn: Connection, set_ids: Iterable[int], reason: str, now: datetime) -> None:
    ids = sorted(set(set_ids))
    for chunk in chunks(ids):
        conn.execute(
            update(send_t)
            .where(send_t.c.invoice_set_id.in_(chunk), send_t.c.status == SendStatus.PENDING)
            .values(status=SendStatus.CANCELLED, reason=reason, finished_at=now)
        )


_SET_COLS = (
    invoice_set_t.c.id,
    invoice_set_t.c.patient_pk,
    invoice_set_t.c.rule_set_id,
    invoice_set_t.c.status,
    invoice_set_t.c.status_reason,
    invoice_set_t.c.failed_reason,
    invoice_set_t.c.will_fail_reason,
    invoice_set_t.c.expired_at,
    invoice_set_t.c.amount_outstanding_cents,
    invoice_set_t.c.anchor_at,
    invoice_set_t.c.paused_at,
    invoice_set_t.c.next_send_at,
    invoice_set_t.c.next_step_index,
    invoice_set_t.c.next_step,
    invoice_set_t.c.next_methods,
    invoice_set_t.c.held_until,
)


# Unlabelled: none of these names is also a set column, so the joined row serves as the patient
# view itself (``contact_of``/``zones_of`` read attributes), with no wrapper per attribute read.
_PATIENT_COLS = tuple(
    patient_t.c[n]
    for n in (
        "phone",
        "phone_type",
        "email",
        "address_line1",
        "city",
        "state",
        "postal_code",
        "country",
        "address_invalid",
        "sms_opt_out",
        "call_opt_out",
        "email_opt_out",
        "email_suppressed",
        "card_token",
        "stripe_customer_id",
        "stripe_payment_method_id",
        "timezone",
        "phone_tz",
        "address_tz",
        "phone_valid",
        "email_valid",
    )
)


def refresh_sets(
    conn: Connection,
    set_ids: Iterable[int],
    ctx: Context,
    rule_sets: RuleSets,
    *,
    reason_prefix: str | None = None,
) -> dict[int, tuple[str, str]]:
    """Re-evaluate open sets after a change: paid, expired, will-fail/active, next send.

    Returns {set_id: (from_status, to_status)} for the sets whose shown status changed; each such
    change is written as an event in the caller's transaction.
    """
    ids = sorted(set(set_ids))
    changed: dict[int, tuple[str, str]] = {}
    for chunk in chunks(ids):
        _refresh_chunk(conn, chunk, ctx, rule_sets, changed)
    return changed


def _refresh_chunk(
    conn: Connection, chunk: Sequence[int], ctx: Context, rule_sets: RuleSets, changed: dict[int, tuple[str, str]]
) -> None:
    """Re-evaluate one chunk of open sets; write what changed, note status changes in ``changed``."""
    from outreach_cli.domain.evaluation import evaluate  # imports phonenumbers: only writers need it

    open_values = [s.value for s in OPEN]
    rows = conn.execute(
        select(*_SET_COLS, *_PATIENT_COLS)
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .where(invoice_set_t.c.id.in_(chunk), invoice_set_t.c.status.in_(open_values))
    ).all()
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    paid: list[int] = []
    for r in rows:
        view = _evaluate_row(evaluate, r, ctx, rule_sets)
        new = {
            "status": view.status.value,
            "status_reason": view.status_reason,
            "will_fail_reason": view.will_fail_reason,
            "expired_at": view.expired_at,
            "next_send_at": view.next_send_at,
            "next_step": view.next_step,
            "next_methods": view.next_methods,
        }
        old = {k: getattr(r, k) for k in new}
        if new == old:
            continue
        new["b_id"] = r.id
        new["updated_at"] = ctx.now
        new["closed_at"] = ctx.now if view.status is Status.PAID else None
        updates.append(new)
        if view.status.value != r.status:
            changed[r.id] = (r.status, view.status.value)
            events.append(_status_event(ctx, r, view))
            if view.status is Status.PAID:
                paid.append(r.id)
    if updates:
        bulk_update(conn, invoice_set_t, updates)
    if paid:
        cancel_pending_sends(conn, paid, "balance reached zero", ctx.now)
    add_events(conn, events)


def _evaluate_row(evaluate: Callable[..., SetView], r: Any, ctx: Context, rule_sets: RuleSets) -> SetView:
    """The evaluation of one set row joined with its patient's columns (a paid set skips the
    patient's contact data and zones: a payments import settles most sets it touches)."""
    from outreach_cli.domain.evaluation import settled_view

    settled = settled_view(Status(r.status), r.amount_outstanding_cents, r.expired_at)
    if settled is not None:
        return settled
    return evaluate(
        status=Status(r.status),
        rule_set=rule_sets.get(r.rule_set_id),
        next_step_index=r.next_step_index or 0,
        anchor=r.anchor_at,
        paused=r.paused_at is not None,
        expired_at=r.expired_at,
        failed_reason=r.failed_reason,
        balance_cents=r.amount_outstanding_cents,
        contact=contact_of(r),
        zones=zones_of(r, ctx.practice_tz),
        window=window_of(r, ctx),
        now=ctx.now,
        held_until=r.held_until,
    )


def _status_event(ctx: Context, r: Any, view: SetView) -> dict[str, Any]:
    return event_row(
        ctx,
        "status",
        set_id=r.id,
        patient_pk=r.patient_pk,
        actor="system",
        from_status=r.status,
        to_status=view.status.value,
        reason=view.status_reason or ("balance reached zero" if view.status is Status.PAID else None),
    )


def open_set_ids_for_patients(conn: Connection, patient_pks: Iterable[int]) -> list[int]:
    pks = sorted(set(patient_pks))
    out: list[int] = []
    for chunk in chunks(pks):
        out.extend(
            conn.execute(
                select(invoice_set_t.c.id).where(
                    invoice_set_t.c.patient_pk.in_(chunk), invoice_set_t.c.status.in_([s.value for s in OPEN])
                )
            ).scalars()
        )
    return out
