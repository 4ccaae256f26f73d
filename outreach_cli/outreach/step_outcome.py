"""A step's outcome once all its sends are final: delivered -> the set is no longer failed;
nothing delivered -> the rule set's fallbacks in order (each usable one claimed, an unusable one
skipped, one held by a contact cap waits); none left -> the set is failed with every reason."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from outreach_cli.domain.contacts import usable_methods
from outreach_cli.domain.patient_view import contact_of, window_of, zones_of
from outreach_cli.domain.scheduling import local_day
from outreach_cli.domain.statuses import COUNTS_AS_SENT, IN_FLIGHT_SENDS, SENDABLE, SendStatus
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import SendKey, step_of
from outreach_cli.outreach.plan import next_allowed_or_none
from outreach_cli.outreach.state import ClaimedSend, StepKey
from outreach_cli.outreach.usage import contact_usage
from outreach_cli.store.bulk import chunks
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t, send_t

SENDABLE_VALUES = [s.value for s in SENDABLE]


@dataclass
class _Step:
    """One step whose sends are all final, and what is known about it."""

    s: Any  # the invoice set row
    gen: int
    idx: int
    sends: list[Any]
    title: str = ""
    day: int = 0


def decide_step_outcomes(
    t: TickContext, conn: Connection, rule_sets: RuleSets, steps: set[StepKey]
) -> list[ClaimedSend]:
    """Decides each step's outcome; returns the fallback sends claimed (to send next)."""
    sets_by_id, sends_by_step = _load(conn, sorted({set_id for set_id, _, _ in steps}))
    new_claims: list[ClaimedSend] = []
    recovered: list[int] = []
    for set_id, gen, idx in sorted(steps):
        if idx < 0:
            continue  # an opt-out confirmation: no fallbacks, no step outcome
        s = sets_by_id[set_id]
        if s.recheck_step == idx:
            conn.execute(
                update(invoice_set_t)
                .where(invoice_set_t.c.id == set_id, invoice_set_t.c.recheck_step == idx)
                .values(recheck_step=None)
            )
        sends = sends_by_step.get((set_id, gen, idx), [])
        if any(r.status in IN_FLIGHT_SENDS for r in sends):
            continue
        if any(r.status in COUNTS_AS_SENT for r in sends):
            if s.failed_reason is not None and s.schedule_gen == gen:
                recovered.append(set_id)  # a delivered step returns a failed set to active
            continue
        if _needs_fallback(s, gen, sends):
            claim = _fall_back(t, conn, rule_sets, _Step(s, gen, idx, sends))
            if claim is not None:
                new_claims.append(claim)
    for chunk in chunks(recovered):
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(failed_reason=None))
    t.state.touched_sets.update(recovered)
    return new_claims


def _load(conn: Connection, set_ids: list[int]) -> tuple[dict[int, Any], dict[StepKey, list[Any]]]:
    """One read of the batch's sets and sends; per-set statements only on the rare fallback path."""
    sets_by_id: dict[int, Any] = {}
    sends_by_step: dict[StepKey, list[Any]] = {}
    for chunk in chunks(set_ids):
        for row in conn.execute(select(invoice_set_t).where(invoice_set_t.c.id.in_(chunk))):
            sets_by_id[row.id] = row
        for snd in conn.execute(select(send_t).where(send_t.c.invoice_set_id.in_(chunk)).order_by(send_t.c.id)):
            sends_by_step.setdefault((snd.invoice_set_id, snd.schedule_gen, snd.step_index), []).append(snd)
    return sets_by_id, sends_by_step


def _needs_fallback(s: Any, gen: int, sends: list[Any]) -> bool:
    """Nothing of the step went out, and the set still wants it: sendable, not paused, the same
    schedule, a balance, and the step not cancelled."""
    if s.status not in SENDABLE_VALUES or s.paused_at is not None or s.schedule_gen != gen:
        return False
    return s.amount_outstanding_cents > 0 and not all(
        r.status == SendStatus.CANCELLED for r in sends if not r.is_fallback
    )


def _fall_back(t: TickContext, conn: Connection, rule_sets: RuleSets, st: _Step) -> ClaimedSend | None:
    """Tries the rule set's fallbacks in order; none left (all tried or unusable) -> failed."""
    s, now = st.s, t.ctx.now
    rs = rule_sets.get(s.rule_set_id)
    p = conn.execute(select(patient_t).where(patient_t.c.id == s.patient_pk)).one()
    usable = usable_methods(contact_of(p))
    step = step_of(rs, st.idx) if st.idx < len(rs.steps) else None
    st.title = st.sends[0].step_title if st.sends else (step.title if step else f"step {st.idx + 1}")
    st.day = st.sends[0].step_day if st.sends else (step.day if step else 0)
    zones = zones_of(p, t.ctx.practice_tz)
    today = local_day(now, zones[0])
    tried = {r.method for r in st.sends}
    base = {
        "invoice_set_id": s.id,
        "patient_pk": s.patient_pk,
        "schedule_gen": st.gen,
        "step_index": st.idx,
        "step_day": st.day,
        "step_title": st.title,
        "rule_set_version": rule_sets.version(s.rule_set_id),
        "due_at": now,
        "is_fallback": True,
    }
    for m in (m for m in rs.fallback if m not in tried):
        if usable[m] is not None:
            row = {**base, "method": m, "status": SendStatus.SKIPPED, "reason": usable[m], "finished_at": now}
            conn.execute(insert(send_t), row)
            t.state.summary.skipped += 1
            continue
        held = contact_usage(conn, t.ctx, {p.id: p}).held(p, [m], today, now, zones[0])
        if held is not None:
            _hold(t, conn, {**base, "method": m}, held, next_allowed_or_none(held[1], zones, window_of(p, t.ctx)))
            return None
        return _claim_fallback(t, conn, {**base, "method": m}, today, s, p, step, rs)
    _mark_failed(t, conn, st)
    return None


def _hold(t: TickContext, conn: Connection, row: dict[str, Any], held: tuple[str, Any], later: Any) -> None:
    """A contact cap holds the fallback: it waits (pending) until the cap frees."""
    cap, until = held
    pending = {
        **row,
        "status": SendStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": later or until,
        "reason": f"held by {cap}",
    }
    conn.execute(insert(send_t), pending)
    conn.execute(
        update(invoice_set_t)
        .where(invoice_set_t.c.id == row["invoice_set_id"])
        .values(held_by=cap, held_until=until, updated_at=t.ctx.now)
    )
    t.state.summary.deferred += 1


def _claim_fallback(
    t: TickContext, conn: Connection, row: dict[str, Any], today: str, s: Any, p: Any, step: Any, rs: Any
) -> ClaimedSend:
    token = secrets.token_hex(16)
    claimed = {
        **row,
        "status": SendStatus.CLAIMED,
        "claim_token": token,
        "lease_until": t.ctx.now + t.options.lease,
        "attempts": 1,
        "local_day": today,
    }
    send_id = conn.execute(insert(send_t).returning(send_t.c.id), claimed).scalar_one()
    key = SendKey(
        send_id,
        s.id,
        row["schedule_gen"],
        row["step_index"],
        row["step_day"],
        row["step_title"],
        row["method"],
        token,
        True,
    )
    return t.messages.claimed(key, s.amount_outstanding_cents, p, step, rs)


def _mark_failed(t: TickContext, conn: Connection, st: _Step) -> None:
    set_id = st.s.id
    sends = conn.execute(
        select(send_t)
        .where(send_t.c.invoice_set_id == set_id, send_t.c.schedule_gen == st.gen, send_t.c.step_index == st.idx)
        .order_by(send_t.c.id)
    )
    reasons = "; ".join(f"{r.method}: {r.reason or r.status}" for r in sends)
    conn.execute(
        update(invoice_set_t)
        .where(invoice_set_t.c.id == set_id)
        .values(failed_reason=f'step "{st.title}" (day {st.day}) could not be delivered: {reasons}')
    )
    t.state.touched_sets.add(set_id)
