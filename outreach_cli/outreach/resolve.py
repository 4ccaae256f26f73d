"""Resolving a send whose outcome is unknown (the run ended before recording it) by asking its
provider, never by sending again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from outreach_cli.channels.base import DELIVERED, TRANSIENT, UNKNOWN, ProviderOutcome
from outreach_cli.domain.statuses import SendStatus
from outreach_cli.outreach.messages import send_event
from outreach_cli.outreach.record import SEND_STATUS, apply_patient_facts, record_card_payments
from outreach_cli.store.events import add_events
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, send_t

if TYPE_CHECKING:
    from outreach_cli.outreach.context import TickContext


def resolve_unknown(t: TickContext, conn: Connection, r: Any, rule_sets: RuleSets) -> None:
    from outreach_cli.outreach.reconcile import provider_read

    provider = t.providers.get(r.method)
    if provider is None:
        return
    claimed = t.messages.for_send_row(conn, r, rule_sets)
    if claimed is None:
        return
    msg = claimed.msg
    msg.attempted_at = r.sent_at or (r.lease_until - t.options.lease if r.lease_until else None)
    what = f"{r.method} lookups of unknown sends"
    out = provider_read(
        t, r.method, what, lambda: provider.lookup(r.provider_ref, msg), f"lookup of send {r.id} failed"
    )
    if out is None or out.status == UNKNOWN:
        return
    values = resolved_values(out, r.provider_ref, t.ctx.now)
    res = conn.execute(
        update(send_t).where(send_t.c.id == r.id, send_t.c.status == SendStatus.UNKNOWN).values(**values)
    )
    if not res.rowcount:
        return
    t.state.summary.reconciled += 1
    apply_patient_facts(t, conn, r.patient_pk, out)
    if r.method == "charge_card" and out.status == DELIVERED and out.charged_cents > 0:
        record_card_payments(t, conn, [(claimed, out)])
    detail = {
        "step": r.step_title,
        "day": r.step_day,
        "method": r.method,
        "status": values["status"],
        "reconciled": True,
        "provider_ref": values.get("provider_ref"),
        "error_code": out.error_code,
        "reason": out.reason,
    }
    add_events(conn, [send_event(t.ctx, r.invoice_set_id, r.patient_pk, detail)])
    t.state.touched_sets.add(r.invoice_set_id)
    if values["status"] == SendStatus.FAILED:
        conn.execute(
            update(invoice_set_t)
            .where(invoice_set_t.c.id == r.invoice_set_id, invoice_set_t.c.schedule_gen == r.schedule_gen)
            .values(recheck_step=r.step_index)
        )


def resolved_values(out: ProviderOutcome, provider_ref: str | None, now: Any) -> dict[str, Any]:
    """The unknown send's new values once its provider answered."""
    if out.status == TRANSIENT:
        # The provider positively has no such message: it never went out; try it again.
        return {"status": SendStatus.PENDING, "next_attempt_at": now, "reason": out.reason}
    status = SEND_STATUS[out.status]
    return {
        "status": status,
        "provider_ref": out.provider_ref or provider_ref,
        "error_code": out.error_code,
        "reason": out.reason,
        "finished_at": now if status != SendStatus.SENT else None,
    }
