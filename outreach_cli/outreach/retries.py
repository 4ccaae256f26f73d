"""Claiming sends that wait for a retry (`pending` after a transient failure, a fallback held by a
cap, or a claim released by an interrupt), at an allowed moment for the patient."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from outreach_cli.domain.patient_view import window_of, zones_of
from outreach_cli.domain.scheduling import is_allowed, local_day
from outreach_cli.domain.statuses import SENDABLE, SendStatus
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import send_key, step_of
from outreach_cli.outreach.plan import next_allowed_or_none
from outreach_cli.outreach.state import ClaimedSend
from outreach_cli.outreach.usage import load_patients
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, send_t


def _due_retries(t: TickContext, conn: Connection, batch: int) -> list[Any]:
    q = (
        select(send_t, invoice_set_t.c.rule_set_id, invoice_set_t.c.amount_outstanding_cents.label("balance"))
        .join(invoice_set_t, invoice_set_t.c.id == send_t.c.invoice_set_id)
        .where(
            send_t.c.status == SendStatus.PENDING,
            send_t.c.next_attempt_at <= t.ctx.now,
            invoice_set_t.c.status.in_([s.value for s in SENDABLE]),
            invoice_set_t.c.paused_at.is_(None),
            invoice_set_t.c.amount_outstanding_cents > 0,
        )
        .order_by(send_t.c.next_attempt_at, send_t.c.id)
        .limit(batch)
    )
    if t.pg:
        q = q.with_for_update(skip_locked=True, of=send_t)
    return list(conn.execute(q).all())


def claim_retries(t: TickContext, conn: Connection, rule_sets: RuleSets, batch: int) -> list[ClaimedSend]:
    now = t.ctx.now
    rows = _due_retries(t, conn, batch)
    if not rows:
        return []
    pmap = load_patients(conn, {r.patient_pk for r in rows})
    out: list[ClaimedSend] = []
    for r in rows:
        p = pmap[r.patient_pk]
        zones = zones_of(p, t.ctx.practice_tz)
        window = window_of(p, t.ctx)
        if not is_allowed(now, zones, window):
            later = next_allowed_or_none(now, zones, window) or now + timedelta(days=1)
            conn.execute(update(send_t).where(send_t.c.id == r.id).values(next_attempt_at=later))
            t.state.summary.deferred += 1
            continue
        token = secrets.token_hex(16)
        conn.execute(
            update(send_t)
            .where(send_t.c.id == r.id, send_t.c.status == SendStatus.PENDING)
            .values(
                status=SendStatus.CLAIMED,
                claim_token=token,
                lease_until=now + t.options.lease,
                attempts=r.attempts + 1,
                local_day=r.local_day or local_day(now, zones[0]),
            )
        )
        rs = rule_sets.get(r.rule_set_id)
        out.append(t.messages.claimed(send_key(r, token), r.balance, p, step_of(rs, r.step_index), rs))
    return out
