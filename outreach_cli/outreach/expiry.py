"""Paid and expired sets, and the re-evaluation of every set a phase touched."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from outreach_cli.domain.statuses import OPEN, Status
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t
from outreach_cli.store.reevaluate import open_set_ids_for_patients, refresh_sets

if TYPE_CHECKING:
    from outreach_cli.outreach.context import TickContext

OPEN_VALUES = [s.value for s in OPEN]


def expire_and_pay(t: TickContext) -> None:
    """Open sets with nothing outstanding become paid; those past their rule set's expiry day
    expire (before anything is sent)."""
    with t.store.write() as conn:
        rule_sets = RuleSets(conn)
        ids = set(
            conn.execute(
                select(invoice_set_t.c.id).where(
                    invoice_set_t.c.status.in_(OPEN_VALUES), invoice_set_t.c.amount_outstanding_cents <= 0
                )
            ).scalars()
        )
        for rid, (_, _, rs) in rule_sets.by_id.items():
            cutoff = t.ctx.now - timedelta(days=rs.expiry_day)
            ids.update(
                conn.execute(
                    select(invoice_set_t.c.id).where(
                        invoice_set_t.c.rule_set_id == rid,
                        invoice_set_t.c.status.in_(OPEN_VALUES),
                        invoice_set_t.c.status != Status.EXPIRED.value,
                        invoice_set_t.c.expired_at.is_(None),
                        invoice_set_t.c.anchor_at <= cutoff,
                    )
                ).scalars()
            )
        if ids:
            t.state.touched_sets.update(ids)
            refresh_touched(t, conn, rule_sets)


def refresh_touched(t: TickContext, conn: Connection, rule_sets: RuleSets) -> None:
    """Re-evaluates the touched sets and the open sets of touched patients; counts the sets that
    became paid or expired."""
    state = t.state
    ids = set(state.touched_sets)
    if state.touched_patients:
        ids.update(open_set_ids_for_patients(conn, state.touched_patients))
    if not ids:
        return
    changed = refresh_sets(conn, ids, t.ctx, rule_sets)
    for set_id, (_, to) in changed.items():
        if to == Status.PAID.value:
            state.summary.paid += 1
            state.dry_change(set_id, "mark-paid")
        elif to == Status.EXPIRED.value:
            state.summary.expired += 1
            state.dry_change(set_id, "expire")
    state.touched_sets.clear()
    state.touched_patients.clear()
