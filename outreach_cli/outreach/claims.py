"""The claim phase: due work becomes `claimed` sends with a lease and a claim token, in the
caller's transaction, which commits before any provider is called (SPEC section 6).

PostgreSQL claims lock the due sets with FOR UPDATE SKIP LOCKED; SQLite claims run in BEGIN
IMMEDIATE transactions. One step per set per tick: a set whose step is still in flight (claimed,
or waiting for a retry) is not claimed again, so steps go out in order and catch-up after
downtime never bursts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, exists, insert, select

from outreach_cli.domain.caps import ContactUsage
from outreach_cli.domain.patient_view import window_of
from outreach_cli.domain.rulesets import Step
from outreach_cli.domain.scheduling import expires_at
from outreach_cli.domain.statuses import IN_FLIGHT_SENDS, SENDABLE, SendStatus
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import SendKey, send_event
from outreach_cli.outreach.plan import Claim, Defer, PlanSet, Skip, plan_step
from outreach_cli.outreach.retries import claim_retries
from outreach_cli.outreach.state import MESSAGE_CHANNELS, ClaimedSend, StepKey
from outreach_cli.outreach.usage import contact_usage, load_patients, plan_patient
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t, send_t

SENDABLE_VALUES = [s.value for s in SENDABLE]


def due_sets_query(now: Any, batch: int, *, pg: bool) -> Select[Any]:
    """The sets whose next step is due, oldest first, none with a step in flight."""
    in_flight = exists().where(send_t.c.invoice_set_id == invoice_set_t.c.id, send_t.c.status.in_(IN_FLIGHT_SENDS))
    q = (
        select(invoice_set_t, patient_t.c.patient_id.label("p_patient_id"))
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .where(
            invoice_set_t.c.status.in_(SENDABLE_VALUES),
            invoice_set_t.c.next_send_at <= now,
            invoice_set_t.c.paused_at.is_(None),
            invoice_set_t.c.amount_outstanding_cents > 0,
            ~in_flight,
        )
        .order_by(invoice_set_t.c.next_send_at, invoice_set_t.c.id)
        .limit(batch)
    )
    if pg:
        q = q.with_for_update(skip_locked=True, of=invoice_set_t)
    return q


@dataclass
class _Batch:
    """The rows one claim batch writes, gathered set by set."""

    skipped: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    set_updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    finalize: list[StepKey] = field(default_factory=list)


def claim_batch(
    t: TickContext, conn: Connection, rule_sets: RuleSets, batch: int
) -> tuple[list[ClaimedSend], list[StepKey]]:
    """Claims due work in the caller's transaction: retries first, then due steps. Returns (the
    claimed sends, steps whose outcome is decided now because nothing could be sent)."""
    claims = claim_retries(t, conn, rule_sets, batch)
    sets = _due_sets(t, conn, batch)
    if not sets:
        return claims, []
    pmap = load_patients(conn, {s.patient_pk for s in sets})
    usage = contact_usage(conn, t.ctx, pmap)
    rows = _Batch()
    for s in sets:
        _plan_set(t, rule_sets, s, pmap[s.patient_pk], usage, rows)
    claims += _write(t, conn, rule_sets, sets, pmap, rows)
    return claims, rows.finalize


def _due_sets(t: TickContext, conn: Connection, batch: int) -> list[Any]:
    sets = list(conn.execute(due_sets_query(t.ctx.now, batch, pg=t.pg)).all())
    if sets and t.pg:
        # Under READ COMMITTED a row locked after another worker's claim committed is re-checked
        # against its new version, but the NOT EXISTS above still used the older snapshot: look
        # again with a fresh statement.
        busy = set(
            conn.execute(
                select(send_t.c.invoice_set_id).where(
                    send_t.c.invoice_set_id.in_([s.id for s in sets]), send_t.c.status.in_(IN_FLIGHT_SENDS)
                )
            ).scalars()
        )
        sets = [s for s in sets if s.id not in busy]
    return sets


def _plan_set(t: TickContext, rule_sets: RuleSets, s: Any, p: Any, usage: ContactUsage, rows: _Batch) -> None:
    now = t.ctx.now
    rs = rule_sets.get(s.rule_set_id)
    idx = s.next_step_index or 0
    if idx >= len(rs.steps) or now >= expires_at(s.anchor_at, rs.expiry_day):
        # No step left, or expired: the re-evaluation decides (expiry before sending, D8).
        t.state.touched_sets.add(s.id)
        return
    step = rs.steps[idx]
    patient = plan_patient(p, t.ctx.practice_tz)
    plan = plan_step(PlanSet(s.id, s.amount_outstanding_cents), patient, step, now, window_of(p, t.ctx), usage)
    base = {
        "invoice_set_id": s.id,
        "patient_pk": s.patient_pk,
        "schedule_gen": s.schedule_gen,
        "step_index": idx,
        "step_day": step.day,
        "step_title": step.title,
        "rule_set_version": rule_sets.version(s.rule_set_id),
        "due_at": s.next_send_at,
    }
    if isinstance(plan, Defer):
        _defer(t, s.id, plan, rows)
    elif isinstance(plan, Skip):
        rows.skipped += [_skipped(base, m, plan.reason, now) for m in step.methods]
        rows.set_updates.append((s.id, {"next_step_index": idx + 1}))
        t.state.touched_sets.add(s.id)
    else:
        _claim(t, s, idx, step, plan, base, rows)
        for m in plan.methods:
            if m in MESSAGE_CHANNELS:
                usage.add(patient, m, plan.local_day, now)


def _skipped(base: dict[str, Any], method: str, reason: str, now: Any) -> dict[str, Any]:
    return {**base, "method": method, "status": SendStatus.SKIPPED, "finished_at": now, "reason": reason}


def _defer(t: TickContext, set_id: int, plan: Defer, rows: _Batch) -> None:
    if plan.held_by is None:
        rows.set_updates.append((set_id, {"next_send_at": plan.until}))
        if plan.until is None:
            t.state.touched_sets.add(set_id)  # re-evaluation explains it (will-fail)
    else:
        values = {"next_send_at": plan.until, "held_by": plan.held_by, "held_until": plan.held_until}
        rows.set_updates.append((set_id, values))
    t.state.summary.deferred += 1


def _claim(t: TickContext, s: Any, idx: int, step: Step, plan: Claim, base: dict[str, Any], rows: _Batch) -> None:
    now = t.ctx.now
    rows.skipped += [_skipped(base, m, reason, now) for m, reason in plan.unusable]
    for m in plan.methods:
        rows.claims.append(
            {
                **base,
                "method": m,
                "status": SendStatus.CLAIMED,
                "claim_token": secrets.token_hex(16),
                "lease_until": now + t.options.lease,
                "attempts": 1,
                "local_day": plan.local_day,
            }
        )
    # next_send_at is cleared until the step's outcome is recorded (then re-evaluated).
    upd: dict[str, Any] = {"next_step_index": idx + 1, "next_send_at": None, "held_by": None, "held_until": None}
    if not plan.methods:
        # Nothing to send: decide fallbacks/failed next; recheck_step survives a crash.
        upd["recheck_step"] = idx
        rows.finalize.append((s.id, s.schedule_gen, idx))
    rows.set_updates.append((s.id, upd))


def _write(
    t: TickContext, conn: Connection, rule_sets: RuleSets, sets: list[Any], pmap: dict[int, Any], rows: _Batch
) -> list[ClaimedSend]:
    _write_skipped(t, conn, rows.skipped)
    # One executemany per shape of change (deferred, advanced, advanced-with-recheck), not a statement per set.
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for set_id, values in rows.set_updates:
        by_shape.setdefault(tuple(sorted(values)), []).append({"b_id": set_id, "updated_at": t.ctx.now, **values})
    for shape_rows in by_shape.values():
        bulk_update(conn, invoice_set_t, shape_rows)
    if not rows.claims:
        return []
    ids: list[int] = []
    for chunk in chunks(rows.claims, 500):
        res = conn.execute(insert(send_t).returning(send_t.c.id, sort_by_parameter_order=True), list(chunk))
        ids.extend(r[0] for r in res)
    by_id = {s.id: s for s in sets}
    out: list[ClaimedSend] = []
    for send_id, row in zip(ids, rows.claims, strict=True):
        s = by_id[row["invoice_set_id"]]
        rs = rule_sets.get(s.rule_set_id)
        step = rs.steps[row["step_index"]]
        key = SendKey(
            send_id,
            s.id,
            s.schedule_gen,
            row["step_index"],
            step.day,
            step.title,
            row["method"],
            row["claim_token"],
            False,
        )
        out.append(t.messages.claimed(key, s.amount_outstanding_cents, pmap[s.patient_pk], step, rs))
    return out


def _write_skipped(t: TickContext, conn: Connection, skipped: list[dict[str, Any]]) -> None:
    t.state.summary.skipped += len(skipped)
    for chunk in chunks(skipped, 1000):
        conn.execute(insert(send_t), list(chunk))
    if skipped:
        events = [
            send_event(
                t.ctx,
                r["invoice_set_id"],
                r["patient_pk"],
                {
                    "step": r["step_title"],
                    "day": r["step_day"],
                    "method": r["method"],
                    "status": SendStatus.SKIPPED,
                    "reason": r["reason"],
                },
            )
            for r in skipped
        ]
        add_events(conn, events)
