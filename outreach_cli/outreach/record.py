"""Recording provider results: fenced by claim token (a send another run has taken over keeps
that run's result), one bulk statement per batch, with the send events, the facts learned about
the patient, and the money a card charge collected."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from outreach_cli.channels.base import DELIVERED, FAILED, SENT, TRANSIENT, UNKNOWN, ProviderOutcome
from outreach_cli.domain.payment_rows import NewPayment
from outreach_cli.domain.statuses import SendStatus, Status
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import send_event
from outreach_cli.outreach.state import ClaimedSend, StepKey, TickSummary
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t, send_t

log = logging.getLogger("outreach.engine")

# The send status a provider result leaves (a transient failure leaves `pending`, see below).
SEND_STATUS = {
    DELIVERED: SendStatus.DELIVERED,
    SENT: SendStatus.SENT,
    FAILED: SendStatus.FAILED,
    UNKNOWN: SendStatus.UNKNOWN,
}
PATIENT_FACTS = ("phone_type", "sms_opt_out", "call_opt_out", "email_suppressed", "email_opt_out")

Result = tuple[ClaimedSend, ProviderOutcome]


def backoff(attempt: int) -> timedelta:
    """Transient failures retry on later runs: 5 min, 20 min, 80 min, ..."""
    return timedelta(minutes=5 * (4 ** max(0, attempt - 1)))


def record_outcomes(t: TickContext, conn: Connection, results: list[Result]) -> set[StepKey]:
    """Write outcomes; returns the steps they belong to (their outcome is decided next)."""
    steps: set[StepKey] = set()
    if not results:
        return steps
    current = _current_claims(t, conn, [c.send_id for c, _ in results])
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    charges: list[Result] = []
    for c, out in results:
        token, cur_status, attempts = current.get(c.send_id, (None, "", 0))
        if token != c.token or cur_status != SendStatus.CLAIMED:
            # Fenced: our lease expired and another run took this send over; its result stands.
            log.info("send %s: claim token no longer matches; result discarded", c.send_id)
            continue
        values = outcome_values(out, attempts, t.options.max_attempts, t.ctx.now, t.state.summary, c.method)
        rows.append({"b_id": c.send_id, **values})
        events.append(_event(t, c, out, values))
        apply_patient_facts(t, conn, c.patient_pk, out)
        if c.method == "charge_card" and out.status == DELIVERED and out.charged_cents > 0:
            charges.append((c, out))
        steps.add(c.step)
        t.state.touched_sets.add(c.set_id)
    bulk_update(conn, send_t, rows)
    add_events(conn, events)
    if charges:
        record_card_payments(t, conn, charges)
    return steps


def _current_claims(t: TickContext, conn: Connection, send_ids: list[int]) -> dict[int, tuple[str | None, str, int]]:
    current: dict[int, tuple[str | None, str, int]] = {}
    for chunk in chunks(send_ids):
        q = select(send_t.c.id, send_t.c.claim_token, send_t.c.status, send_t.c.attempts).where(send_t.c.id.in_(chunk))
        if t.pg:
            q = q.with_for_update()
        for send_id, token, status, attempts in conn.execute(q):
            current[send_id] = (token, status, attempts)
    return current


def outcome_values(
    out: ProviderOutcome, attempts: int, max_attempts: int, now: datetime, summary: TickSummary, method: str
) -> dict[str, Any]:
    """The send row's new values for provider result ``out`` after ``attempts`` attempts, counted
    in ``summary``. A transient failure waits for a retry (backoff) until ``max_attempts``."""
    values: dict[str, Any] = {
        "provider_ref": out.provider_ref,
        "error_code": out.error_code,
        "reason": out.reason,
        "claim_token": None,
        "lease_until": None,
        "next_attempt_at": None,
        "finished_at": None,
        "sent_at": None,
    }
    status = out.status
    summary.attempted += 1
    if status == TRANSIENT:
        n, first = summary.transient_by_method.get(method, (0, out.reason or "temporary failure"))
        summary.transient_by_method[method] = (n + 1, first)
        if attempts < max_attempts:
            summary.transient += 1
            return {**values, "status": SendStatus.PENDING, "next_attempt_at": now + backoff(attempts)}
        status = FAILED
        summary.gave_up += 1
        values["reason"] = f"{out.reason or 'temporary failure'} (gave up after {attempts} attempts)"
    values["status"] = SEND_STATUS[status]
    values["finished_at"] = now if status in (DELIVERED, FAILED) else None
    if status in (DELIVERED, SENT, UNKNOWN):
        values["sent_at"] = now
    _count(summary, values["status"])
    return values


def _count(summary: TickSummary, status: str) -> None:
    if status in (SendStatus.DELIVERED, SendStatus.SENT):
        summary.sent += 1
    elif status == SendStatus.FAILED:
        summary.failed += 1
    elif status == SendStatus.UNKNOWN:
        summary.unknown += 1


def _event(t: TickContext, c: ClaimedSend, out: ProviderOutcome, values: dict[str, Any]) -> dict[str, Any]:
    detail = {
        "step": c.msg.step_title,
        "day": c.step_day,
        "method": c.method,
        "status": values["status"],
        "provider_ref": out.provider_ref,
        "error_code": out.error_code,
        "reason": values.get("reason"),
        "fallback": c.is_fallback or None,
    }
    return send_event(t.ctx, c.set_id, c.patient_pk, detail)


def apply_patient_facts(t: TickContext, conn: Connection, patient_pk: int, out: ProviderOutcome) -> None:
    """Facts a provider learned about the patient (a landline, an opt-out, a bounce)."""
    allowed = {k: v for k, v in out.patient_update.items() if k in PATIENT_FACTS}
    if allowed:
        conn.execute(update(patient_t).where(patient_t.c.id == patient_pk).values(updated_at=t.ctx.now, **allowed))
        t.state.touched_patients.add(patient_pk)


def record_card_payments(t: TickContext, conn: Connection, charges: list[Result]) -> None:
    """Money a card charge collected goes to the payment ledger (through the Stripe door)."""
    from outreach_cli.outreach.stripe_payments import record_payments

    payments = [p for c, out in charges if (p := _card_payment(t, conn, c, out)) is not None]
    if not payments:
        return
    changed = record_payments(conn, payments, t.ctx, RuleSets(conn))
    for set_id, (_, to) in changed.items():
        if to == Status.PAID.value:
            t.state.summary.paid += 1
            t.state.dry_change(set_id, "mark-paid")


def _card_payment(t: TickContext, conn: Connection, c: ClaimedSend, out: ProviderOutcome) -> NewPayment | None:
    bal = conn.execute(
        select(invoice_set_t.c.amount_outstanding_cents).where(invoice_set_t.c.id == c.set_id)
    ).scalar_one()
    stripe = (out.provider_ref or "").startswith("pi_")
    # Money Stripe collected is recorded in full (any excess is credit).
    amount = out.charged_cents if stripe else min(out.charged_cents, bal)
    if amount <= 0:
        return None
    return {
        # Stripe: the PaymentIntent ID, so its event applies nothing a second time.
        "payment_id": out.provider_ref if stripe and out.provider_ref else f"card-{c.send_id}",
        "patient_pk": c.patient_pk,
        "amount_cents": amount,
        "paid_at": t.ctx.now,
        "charge_ref": None,
        "source": "card",
    }
